// Package relay hands accepted mail to the backend mail server over pooled
// SMTP connections, synchronously: the gateway answers the client's final
// dot only after the backend answered ours, so a message is never accepted
// that the backend has not taken responsibility for (RFC 5321 §6.1: the
// 250 to the final dot transfers responsibility).
//
// # Transaction
//
// Pool.Begin takes a connection and sends MAIL FROM, Txn.Rcpt sends one RCPT
// TO per recipient (a refused recipient leaves the transaction usable, RFC
// 5321 §3.3), and Txn.Data sends DATA, the gateway's header, the body and
// the final dot, and returns the backend's reply. The reply of every
// command the backend refuses is passed through as a *policy.Reply, so the
// client sees the backend's own code, enhanced code and text; transport
// failures become the fixed 451 replies of package policy. Every error
// Begin, Rcpt and Data return is a *policy.Reply.
//
// # Connections
//
// A connection is greeted once (EHLO, RFC 5321 §4.1.1.1) and then carries
// many transactions: after a completed DATA the SMTP state is back to "no
// transaction" and the next MAIL may follow at once (RFC 5321 §4.1.4); after
// an abandoned transaction RSET (§4.1.1.5) clears it first. Idle connections
// are kept per server (LIFO, so the fewest stay warm), checked without a
// round trip before reuse (a connection the backend closed, or sent its
// idle-timeout 421 on, §3.8, has bytes or EOF pending), closed after
// IdleTimeout and retired after MaxMessages. A connection closed on purpose
// says QUIT first (§4.1.1.10).
//
// Servers are tried in configuration order. One that cannot be connected to
// is marked down for RetryDown and skipped while another is available; a
// transaction never moves to another server once MAIL has been sent.
//
// STARTTLS (RFC 3207) is "none", "opportunistic" (used when advertised, with
// a fall back to plaintext for RetryDown when the handshake fails; this does
// not resist an active attacker) or "required" (no TLS, no connection).
// RFC 3207 §4.2 requires discarding what was learnt before TLS, so the
// client greets again with EHLO after the handshake.
//
// # Client identity
//
// With backend client_identity "auto" (the default), the real client's
// address, port, confirmed DNS name, HELO and protocol (MailParams.Client)
// go to the backend before each MAIL: with XFORWARD when it advertises
// that (Postfix: smtpd_authorized_xforward_hosts), else with XCLIENT
// (smtpd_authorized_xclient_hosts). Values are xtext (RFC 3461 §4), only
// the attributes the backend lists are sent, and unknowns are
// [UNAVAILABLE]. XFORWARD holds for one transaction, so connections stay
// pooled; it changes what Postfix logs and passes on, not its Received
// header. XCLIENT makes the client the backend's client for the rest of
// the session (Received header, access rules) and Postfix allows it once
// per session, so such a connection carries one transaction and is then
// closed. A refusal of either is logged and the mail goes on without.
// go-smtp has no way to send these commands; see cmdConn for how the relay
// sends them on go-smtp's stream, and why it does STARTTLS itself.
//
// # Round trips
//
// A message costs the backend two round trips when it offers PIPELINING
// and CHUNKING (RFC 2920, RFC 3030), as Postfix does: XFORWARD, MAIL and
// the first RCPT in one write, then the message as one "BDAT n LAST"
// chunk (Txn.Data; backend chunking "auto"). Without CHUNKING the message
// goes with DATA, dot-stuffed, a round trip more. go-smtp's client
// pipelines nothing and has no BDAT: both go through cmdConn.
//
// # Writes
//
// Each connection writes through a 64 KiB buffer that is flushed when the
// SMTP client next reads, which it always does after a command or the final
// dot: a command is one segment, and a small message goes out with its
// final dot in one write instead of one per 4 KiB textproto flush.
package relay
