package address

import "golang.org/x/net/idna"

// toASCII converts a domain with non-ASCII labels to its A-label form with
// UTS #46 lookup processing (IDNA2008, non-transitional), the mapping
// resolvers apply: case folding, NFC, full-width forms and the ideographic
// full stops, so every spelling a sender may use of one of our domains is
// recognised as it, and the backend is given the one A-label form.
func toASCII(s string) (string, error) { return idna.Lookup.ToASCII(s) }
