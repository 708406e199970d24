package dkim

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mxgate/mxgate/checks"
	"github.com/mxgate/mxgate/internal/resolver"
	"github.com/mxgate/mxgate/internal/resolver/resolvertest"
	"github.com/mxgate/mxgate/internal/resolver/zoneserver"
)

// The examples of RFC 6376 Appendix A and RFC 8463 Appendix A are in
// testdata as the RFCs print them, less the three-column page margin; the
// messages are stored with LF and read with CRLF, which the RFC text
// cannot show.

// readMessage reads a testdata message as it is on the wire (CRLF).
func readMessage(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return crlf(string(b))
}

// zoneTXT reads the TXT records of a testdata master file, each record's
// character-strings joined, as a resolver returns them.
func zoneTXT(t *testing.T, name string) map[string][]string {
	t.Helper()
	z, err := zoneserver.LoadZoneFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	zp := dns.NewZoneParser(strings.NewReader(z.Text), z.Origin, name)
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		if txt, isTXT := rr.(*dns.TXT); isTXT {
			out[txt.Hdr.Name] = append(out[txt.Hdr.Name], strings.Join(txt.Txt, ""))
		}
	}
	if err := zp.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// RFC 8463 Appendix A: one message signed with Ed25519 (s=brisbane) and
// with RSA (s=test). Both verify, exactly as transcribed.
func TestRFC8463Example(t *testing.T) {
	msg := readMessage(t, "rfc8463-a3.eml")
	f := &resolvertest.Fake{TXT: zoneTXT(t, "rfc8463-a2.zone")}
	r := run(t, f, msg, Options{})
	want := "d=football.example.com s=brisbane ed25519-sha256: pass; d=football.example.com s=test rsa-sha256: pass"
	if r.Result != "pass" || r.Detail != want {
		t.Fatalf("Result %q, Detail\n got %s\nwant %s", r.Result, r.Detail, want)
	}
	if got := domains(t, r); !slices.Equal(got, []string{"football.example.com"}) {
		t.Errorf("dkim.domains = %q", got)
	}
}

// The same, with the key records served over the wire by an in-process
// authoritative server and fetched by the gateway's resolver, so the RSA
// record's four character-strings are joined by the real code.
func TestRFC8463ExampleOverDNS(t *testing.T) {
	z, err := zoneserver.LoadZoneFile(filepath.Join("testdata", "rfc8463-a2.zone"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := zoneserver.Start("127.0.0.1:0", z)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	// A fresh client each time: the resolver caches answers.
	check := func() *Check {
		c, err := resolver.New(resolver.Config{Servers: []string{s.Addr()}, Timeout: 500 * time.Millisecond, Attempts: 2})
		if err != nil {
			t.Fatal(err)
		}
		return New(c, Options{Timeout: 2 * time.Second})
	}
	msg := readMessage(t, "rfc8463-a3.eml")
	if r := check().Run(context.Background(), checks.Input{Message: message(msg)}); r.Result != "pass" || strings.Count(r.Detail, ": pass") != 2 {
		t.Fatalf("Result %q: %s", r.Result, r.Detail)
	}

	// A SERVFAIL from the wire is a temperror, not a permerror: the
	// resolver's error reaches go-msgauth unwrapped.
	s.SetServFail("test._domainkey.football.example.com", true)
	r := check().Run(context.Background(), checks.Input{Message: message(msg)})
	want := "d=football.example.com s=test rsa-sha256: temperror"
	if r.Result != "pass" || !strings.Contains(r.Detail, want) {
		t.Fatalf("Result %q, Detail %q; want pass and %q", r.Result, r.Detail, want)
	}
}

// The private keys of RFC 8463 Appendix A.1 are those of the records of
// A.2: a check on the transcription.
func TestRFC8463Keys(t *testing.T) {
	txt := zoneTXT(t, "rfc8463-a2.zone")
	seedB64, err := os.ReadFile(filepath.Join("testdata", "rfc8463-a1-ed25519.key"))
	if err != nil {
		t.Fatal(err)
	}
	seed, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(seedB64)))
	if err != nil || len(seed) != ed25519.SeedSize {
		t.Fatalf("seed: %d octets, %v", len(seed), err)
	}
	ek := ed25519.NewKeyFromSeed(seed)
	if got, want := keyRecord(t, ek), txt["brisbane._domainkey.football.example.com."][0]; got != want {
		t.Errorf("Ed25519 key gives\n%s\nA.2 says\n%s", got, want)
	}
	pemBytes, err := os.ReadFile(filepath.Join("testdata", "rfc8463-a1-rsa.pem"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		t.Fatal("rfc8463-a1-rsa.pem: no PEM block")
	}
	rk, err := x509.ParsePKCS1PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	// A.2 publishes the RSA key as SubjectPublicKeyInfo, with k=rsa.
	if got, want := keyRecord(t, rk), txt["test._domainkey.football.example.com."][0]; got != want {
		t.Errorf("RSA key gives\n%s\nA.2 says\n%s", got, want)
	}
}

// RFC 6376 Appendix A does not verify as printed, for two reasons, both
// in the text rather than in the verifier:
//
//   - the key record of A.3 is under $ORIGIN _domainkey.example.org,
//     while the signature of A.2 says d=example.com, so the key is not
//     found (permerror);
//   - the body of A.2 reads "game.  Are" with two spaces, but bh= is the
//     hash of the body with one; with c=simple/simple that breaks the body
//     hash (fail).
//
// Each is reported as an erratum of RFC 6376 by other implementers.
// Corrected for both, the signature verifies: the cryptography of the
// example is sound, and so is ours.
func TestRFC6376Example(t *testing.T) {
	printed := readMessage(t, "rfc6376-a2.eml")
	oneSpace := replace(t, printed, "game.  Are", "game. Are")
	asPrinted := zoneTXT(t, "rfc6376-a3.zone")
	atExampleCom := map[string][]string{"brisbane._domainkey.example.com.": asPrinted["brisbane._domainkey.example.org."]}
	for _, tc := range []struct {
		name string
		msg  []byte
		txt  map[string][]string
		want string
	}{
		{"as printed", printed, asPrinted, "permerror (no key for signature: lookup brisbane._domainkey.example.com.: no such host)"},
		{"key at example.com", printed, atExampleCom, "fail (body hash did not verify)"},
		{"key at example.com, one space", oneSpace, atExampleCom, "pass"},
		{"one space, key as printed", oneSpace, asPrinted, "permerror (no key for signature: lookup brisbane._domainkey.example.com.: no such host)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run(t, &resolvertest.Fake{TXT: tc.txt}, tc.msg, Options{})
			want := "d=example.com s=brisbane rsa-sha256: " + tc.want
			if r.Detail != want {
				t.Errorf("Detail\n got %s\nwant %s", r.Detail, want)
			}
			if g := generic(t, r, 0); g.Params["header.i"] != "joe@football.example.com" {
				t.Errorf("header.i = %q", g.Params["header.i"])
			}
		})
	}
}
