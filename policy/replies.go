package policy

// The gateway's own replies (design.md §4 "Replies"). Each one is a value a
// component returns as an error; texts are generic and the SMTP boundary
// appends the reference id. TestReplyClasses walks All() and checks that
// basic and enhanced codes agree.
var (
	ErrRelayDenied = &Reply{550, [3]int{5, 7, 1}, "Relay access denied", ReasonRelayDenied}
	ErrRouteHack   = &Reply{550, [3]int{5, 7, 1}, "Relay access denied: source routes, %-hacks and bang paths are not accepted", ReasonRelayDenied}
	ErrBadRcpt     = &Reply{553, [3]int{5, 1, 3}, "Recipient address syntax not accepted", ReasonBadRecipient}
	ErrBadRcptDom  = &Reply{553, [3]int{5, 1, 2}, "Recipient domain syntax not accepted", ReasonBadRecipient}
	ErrBadSender   = &Reply{553, [3]int{5, 1, 7}, "Sender address syntax not accepted", ReasonBadSender}
	ErrUTF8Needed  = &Reply{553, [3]int{5, 6, 7}, "Non-ASCII address requires the SMTPUTF8 parameter", ReasonBadRecipient}
	ErrUTF8Backend = &Reply{550, [3]int{5, 6, 7}, "SMTPUTF8 is not supported by the destination; send without internationalized addresses", ReasonSMTPUTF8}
	// REQUIRETLS (RFC 8689): the parameter is only taken over TLS, and
	// the message only relayed over a backend connection whose certificate
	// was verified (5.7.10) and whose server offers REQUIRETLS itself
	// (5.7.30), so the requirement travels with the message.
	ErrRequireTLSPlain   = &Reply{530, [3]int{5, 7, 10}, "REQUIRETLS needs a TLS session: send STARTTLS first", ReasonRequireTLS}
	ErrRequireTLSVerify  = &Reply{550, [3]int{5, 7, 10}, "REQUIRETLS: the destination is not reachable over verified TLS", ReasonRequireTLS}
	ErrRequireTLSBackend = &Reply{550, [3]int{5, 7, 30}, "REQUIRETLS is not supported by the destination", ReasonRequireTLS}
	ErrNestedMail        = &Reply{503, [3]int{5, 5, 1}, "Nested MAIL command: send RSET first", ReasonNestedMail}
	ErrNoValidRcpt       = &Reply{554, [3]int{5, 5, 1}, "No valid recipients", ReasonNoValidRcpt}

	ErrTooLarge      = &Reply{552, [3]int{5, 3, 4}, "Message size exceeds fixed maximum message size", ReasonMessageTooLarge}
	ErrTooManyRcpts  = &Reply{452, [3]int{4, 5, 3}, "Too many recipients", ReasonTooManyRcpts}
	ErrBareNewline   = &Reply{550, [3]int{5, 6, 0}, "Message contains bare CR or LF line breaks; use CRLF", ReasonBareNewline}
	ErrNUL           = &Reply{550, [3]int{5, 6, 0}, "Message contains NUL characters", ReasonNULInData}
	ErrLineTooLong   = &Reply{500, [3]int{5, 5, 2}, "Line too long", ReasonLineTooLong}
	ErrDataTimeout   = &Reply{421, [3]int{4, 4, 2}, "Timeout waiting for data, closing connection", ReasonDataTimeout}
	ErrDataAborted   = &Reply{451, [3]int{4, 4, 2}, "Message transfer aborted", ReasonDataAborted}
	ErrConnLimit     = &Reply{421, [3]int{4, 7, 0}, "Too many connections, try again later", ReasonConnLimit}
	ErrTooManyErrors = &Reply{421, [3]int{4, 7, 0}, "Too many errors, closing connection", ReasonProtocolError}
	ErrConnLimitIP   = &Reply{421, [3]int{4, 7, 0}, "Too many connections from your address, try again later", ReasonConnLimitIP}
	ErrShuttingDown  = &Reply{421, [3]int{4, 3, 2}, "Service shutting down, try again later", ReasonShuttingDown}
	ErrBackendDown   = &Reply{451, [3]int{4, 4, 1}, "Destination unavailable, try again later", ReasonBackendDown}
	ErrBackendLost   = &Reply{451, [3]int{4, 4, 2}, "Connection to destination lost, try again later", ReasonBackendDown}
	ErrBackendTimout = &Reply{451, [3]int{4, 4, 2}, "Destination timed out, try again later", ReasonBackendTimeout}
	ErrInternal      = &Reply{451, [3]int{4, 3, 0}, "Local error in processing, try again later", ReasonInternal}

	// Protocol checks (the pre-greeting test and the listener's checks).
	ErrPregreet          = &Reply{550, [3]int{5, 5, 1}, "Protocol error: you talked before the greeting", ReasonPregreet}
	ErrPregreetDrop      = &Reply{521, [3]int{5, 5, 1}, "Protocol error: you talked before the greeting", ReasonPregreet}
	ErrNonSMTP           = &Reply{521, [3]int{5, 5, 1}, "This is an SMTP server", ReasonNonSMTP}
	ErrEarlyPipelining   = &Reply{550, [3]int{5, 5, 1}, "Protocol error: commands sent ahead of replies without PIPELINING", ReasonEarlyPipelining}
	ErrEarlyPipelineDrop = &Reply{521, [3]int{5, 5, 1}, "Protocol error: commands sent ahead of replies without PIPELINING", ReasonEarlyPipelining}

	// Greylisting (RFC 6647): the text says when to retry.
	ErrGreylisted = &Reply{451, [3]int{4, 7, 1}, "Greylisted, please try again later", ReasonGreylisted}

	// A message that has been around too often (RFC 5321 §6.3).
	ErrMailLoop = &Reply{554, [3]int{5, 4, 6}, "Too many Received header fields: mail loop", ReasonMailLoop}

	// Rate limits.
	ErrRateConnections = &Reply{421, [3]int{4, 7, 0}, "Too many connections from your network, slow down", ReasonRateLimit}
	ErrRateMessages    = &Reply{451, [3]int{4, 7, 1}, "Too many messages from your network, try again later", ReasonRateLimit}
	ErrRateRecipients  = &Reply{451, [3]int{4, 7, 1}, "Too many recipients from your network, try again later", ReasonRateLimit}

	// The default replies of rule actions (a rule may give its own) and of
	// the score thresholds. Greylisting says "try again later" and nothing
	// more: the retry is what it tests.
	ErrPolicyReject   = &Reply{550, [3]int{5, 7, 1}, "Message rejected by policy", ReasonRule}
	ErrPolicyTempfail = &Reply{451, [3]int{4, 7, 1}, "Try again later", ReasonRule}
	ErrPolicyDrop     = &Reply{554, [3]int{5, 7, 1}, "Connection refused by policy", ReasonRule}
	ErrPolicyGreylist = &Reply{451, [3]int{4, 7, 1}, "Greylisted, please try again later", ReasonRule}
	ErrScoreReject    = &Reply{554, [3]int{5, 7, 1}, "Message rejected: spam score too high", ReasonScore}
	ErrScoreGreylist  = &Reply{451, [3]int{4, 7, 1}, "Greylisted, please try again later", ReasonScore}
)

// All lists every fixed reply the gateway can send, for tests and docs.
func All() []*Reply {
	return []*Reply{
		ErrRelayDenied, ErrRouteHack, ErrBadRcpt, ErrBadRcptDom, ErrBadSender, ErrUTF8Needed,
		ErrUTF8Backend, ErrRequireTLSPlain, ErrRequireTLSVerify, ErrRequireTLSBackend, ErrNestedMail, ErrNoValidRcpt, ErrTooLarge, ErrTooManyRcpts,
		ErrBareNewline, ErrNUL, ErrLineTooLong, ErrDataTimeout, ErrDataAborted, ErrConnLimit,
		ErrConnLimitIP, ErrShuttingDown, ErrBackendDown, ErrBackendLost, ErrBackendTimout,
		ErrInternal, ErrPolicyReject, ErrPolicyTempfail, ErrPolicyDrop, ErrPolicyGreylist,
		ErrScoreReject, ErrScoreGreylist,
	}
}
