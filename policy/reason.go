// Package policy is where mxgate decides. It owns the stable reason tokens,
// the actions, the SMTP stages, and the mapping from a decision to the reply
// the client is sent. Every other package reports evidence; only policy turns
// evidence into a reply, so the reply table below is the single place that
// says what a sender sees for each outcome (design.md §4, "Replies").
package policy

// Reason is a stable token naming why a transaction ended the way it did. It
// is the verdict record's `reason`, a metric label, and it appears in reply
// text. Tokens are part of the public interface: never rename one; add a new
// one instead.
type Reason string

// The reason tokens. Keep them lower_snake_case and bounded: they are
// Prometheus label values.
const (
	ReasonAccepted        Reason = "accepted"             // relayed, backend said 250
	ReasonRelayDenied     Reason = "relay_denied"         // recipient domain is not ours
	ReasonBadRecipient    Reason = "bad_recipient"        // recipient address syntax we refuse to relay
	ReasonBadSender       Reason = "bad_sender"           // sender address syntax
	ReasonSMTPUTF8        Reason = "smtputf8_unsupported" // client needs SMTPUTF8, backend lacks it
	ReasonRequireTLS      Reason = "requiretls"           // REQUIRETLS (RFC 8689) asked for and not possible
	ReasonNestedMail      Reason = "nested_mail"          // MAIL inside a transaction
	ReasonNoValidRcpt     Reason = "no_valid_recipients"  // DATA with every RCPT refused
	ReasonBackendRcpt     Reason = "backend_rcpt"         // backend refused a recipient (its reply passed through)
	ReasonBackendMail     Reason = "backend_mail"         // backend refused MAIL FROM (its reply passed through)
	ReasonBackendData     Reason = "backend_data"         // backend refused the message (its reply passed through)
	ReasonBackendDown     Reason = "backend_unavailable"  // no backend reachable, or connection lost
	ReasonBackendTimeout  Reason = "backend_timeout"      // backend did not answer in time
	ReasonMessageTooLarge Reason = "message_too_large"
	ReasonTooManyRcpts    Reason = "too_many_recipients"
	ReasonBareNewline     Reason = "bare_newline" // bare CR or LF in DATA
	ReasonNULInData       Reason = "nul_in_data"  // NUL byte in DATA
	ReasonLineTooLong     Reason = "line_too_long"
	ReasonDataTimeout     Reason = "data_timeout"     // client stalled inside DATA
	ReasonDataAborted     Reason = "data_aborted"     // client vanished or reset mid-DATA
	ReasonConnLimit       Reason = "conn_limit"       // too many connections in total
	ReasonConnLimitIP     Reason = "conn_limit_ip"    // too many connections from one IP
	ReasonTimeout         Reason = "timeout"          // idle timeout while waiting for a command
	ReasonProtocolError   Reason = "protocol_error"   // connection killed by the protocol layer
	ReasonNoTransaction   Reason = "no_transaction"   // connection closed without MAIL FROM
	ReasonClientAbort     Reason = "client_abort"     // RSET, QUIT or disconnect before end of DATA
	ReasonShuttingDown    Reason = "shutting_down"    // gateway stopping
	ReasonPregreet        Reason = "pregreet"         // talked before the greeting
	ReasonNonSMTP         Reason = "non_smtp"         // HTTP or other non-SMTP commands
	ReasonEarlyPipelining Reason = "early_pipelining" // commands ahead of replies without PIPELINING
	ReasonRateLimit       Reason = "rate_limit"       // over a per-client rate limit
	ReasonMailLoop        Reason = "mail_loop"        // too many Received header fields
	ReasonGreylisted      Reason = "greylisted"       // deferred by greylisting
	ReasonInternal        Reason = "internal_error"   // a fault of ours; details only in logs
	ReasonRule            Reason = "rule"             // a policy rule decided; the record names it
	ReasonScore           Reason = "score"            // the score crossed a threshold (policy.thresholds)
)

// Action is what happened to a transaction (design.md §4: `action`).
type Action string

// The actions. ActionAbort marks a transaction the client ended itself
// (RSET, QUIT or disconnect before the end of DATA); it is not a decision of
// ours, but the record must still say how the transaction ended.
const (
	ActionAccept   Action = "accept"
	ActionTag      Action = "tag"
	ActionGreylist Action = "greylist"
	ActionTempfail Action = "tempfail"
	ActionReject   Action = "reject"
	ActionDrop     Action = "drop"
	ActionAbort    Action = "abort"
	// ActionSkipGreylist is a rule action only: the transaction is not
	// greylisted, and checking goes on.
	ActionSkipGreylist Action = "skip_greylist"
)

// Stage is an SMTP stage at which evidence is known and decisions are made.
type Stage string

// The stages, in protocol order.
const (
	StageConnect Stage = "connect"
	StageHelo    Stage = "helo"
	StageMail    Stage = "mail"
	StageRcpt    Stage = "rcpt"
	StageData    Stage = "data"
)
