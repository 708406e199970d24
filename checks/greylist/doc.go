// Package greylist decides, at RCPT TO, whether a recipient is greylisted:
// answered "451 4.7.1 try again later" the first time a client offers it,
// and accepted when the client comes back.
//
// The mechanism is Evan Harris's ("The Next Step in the Spam Control War:
// Greylisting", 2003), described for the IETF in RFC 6647 ("Email
// Greylisting: An Applicability Statement for SMTP"). A real MTA queues
// mail it could not deliver and retries it (RFC 5321 §4.5.4.1); much
// spamware fires once and moves on. So the gateway remembers a triplet —
// who is sending, the envelope sender and the recipient — defers its first
// attempt, and lets it through when it is retried after Delay and within
// RetryWindow. A client that has retried once has shown that it queues,
// so its key is then allowed without greylisting for AllowFor.
//
// The classic triplet keys on the client's IP address (or its /24), which
// fails for the senders that matter most: Office 365, Gmail, SendGrid, SES
// and Mailchimp retry from a pool of addresses in different networks, so
// every retry looks new and mail is delayed for hours or lost (postgrey
// issues #20, #49, #50, #57, #67; rspamd #435). Here the client part of
// the triplet (ClientKey) is the most stable identity the session has
// evidence for:
//
//   - org:DOMAIN when SPF passed for the MAIL FROM domain: the domain's
//     owner authorised the address, so every address of the pool is the
//     same sender. DOMAIN is the organisational domain (the registrable
//     name from the Public Suffix List), so mail from bounce.example.com
//     and from example.com are one sender.
//   - ptr:DOMAIN when the client's PTR name is forward-confirmed: the
//     organisational domain of the name, so mta1.out.example.net and
//     mta2.out.example.net are one sender. A name that embeds the
//     client's address (1-2-3-4.dyn.isp.example) names an access network,
//     not an MTA; keying on it would let one customer's retry allow the
//     whole ISP, so such names fall through to the network key.
//   - net:PREFIX otherwise: the client's /24 (IPv4) or /64 (IPv6), as
//     postgrey does by default, so at least a pool within one network
//     shares its triplets.
//
// The sender part is normalised (NormalizeSender) so that per-message tags
// (BATV, SRS, VERP, +tags) do not make every retry a new triplet.
//
// State lives in a greystore.Store, possibly shared by several gateways
// behind one MX (record.go documents the versioned JSON schema). Every
// change goes through Store.Update, so two gateways — or fifty sessions —
// seeing the same first attempt create exactly one triplet. Expiry is
// decided from the times in each record, not from the store's TTL: the
// TTL only collects garbage, so a store that expires late cannot revive
// an entry. Any store failure is State error with the error returned; the
// session fails open (accepts), since a broken store must not defer all
// mail.
package greylist
