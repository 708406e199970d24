// Package verdict defines the verdict record, mxgate's public log schema
// (design.md §4 "Verdict records"), and the one function that writes it.
//
// One JSON object per line: one per transaction, and one per connection that
// ended before any transaction. Operators grep it, feed it to fail2ban and
// SIEMs, and `gateway replay` reads it back, so field names never change
// without a Schema bump.
package verdict

import (
	"time"

	"github.com/mxgate/mxgate/policy"
)

// Schema is the version of the record layout. Bump it when a field changes
// meaning or name; adding a field does not need a bump.
const Schema = 1

// Record is one verdict.
type Record struct {
	TS     time.Time `json:"ts"`
	Schema int       `json:"schema"`
	// Ref is the reference id also given in reply texts: "(ref <Ref>)".
	Ref    string `json:"ref"`
	ConnID string `json:"conn_id"`
	// Listener is the local address the connection came in on.
	Listener string `json:"listener,omitempty"`

	Client Client `json:"client"`

	MailFrom *string `json:"mail_from,omitempty"` // nil: no MAIL FROM; "" is the null sender
	Rcpts    []Rcpt  `json:"rcpts,omitempty"`
	// Size is the message size in bytes as received, before our headers.
	Size int64 `json:"size,omitempty"`
	// RequireTLS: the client gave MAIL FROM ... REQUIRETLS (RFC 8689).
	RequireTLS bool   `json:"requiretls,omitempty"`
	MessageID  string `json:"message_id,omitempty"`
	HeaderFrom string `json:"header_from,omitempty"`

	Checks []Check `json:"checks,omitempty"`
	Rules  []Rule  `json:"rules,omitempty"`
	// Facts are the facts the decision was made from, by name
	// (docs/policy.md), so `gateway replay` can decide again without DNS.
	Facts map[string]any `json:"facts,omitempty"`
	// Greylist is the greylisting decision of the last recipient it
	// applied to: the triplet key, when it was first seen, when a retry
	// passes, and the reference id of the first attempt (for release).
	Greylist *Greylist `json:"greylist,omitempty"`
	// Shadow is what policy.mode: shadow kept the gateway from doing.
	Shadow *Shadow `json:"shadow,omitempty"`

	Score  float64       `json:"score"`
	Action policy.Action `json:"action"`
	Reason policy.Reason `json:"reason"`
	Stage  policy.Stage  `json:"stage"`
	// Detail says more than the reason token, for people (never sent to the
	// client): the backend error, the offending byte offset, ...
	Detail string `json:"detail,omitempty"`

	Reply *Reply `json:"reply,omitempty"`
	Relay *Relay `json:"relay,omitempty"`

	DurationMS int64 `json:"duration_ms"`
}

// Client is what is known about the connecting client.
type Client struct {
	IP     string `json:"ip"`
	Port   int    `json:"port"`
	PTR    string `json:"ptr,omitempty"`
	FCrDNS *bool  `json:"fcrdns,omitempty"`
	Helo   string `json:"helo,omitempty"`
	TLS    *TLS   `json:"tls,omitempty"`
}

// TLS describes the client connection's TLS, when there was a handshake.
type TLS struct {
	Version string `json:"version"`
	Cipher  string `json:"cipher"`
}

// Rcpt is one RCPT TO with its own outcome.
type Rcpt struct {
	Addr   string        `json:"addr"`
	Reason policy.Reason `json:"reason"`
	Reply  Reply         `json:"reply"`
}

// Check is one check's result.
type Check struct {
	Name   string  `json:"name"`
	Result string  `json:"result"`
	Detail string  `json:"detail,omitempty"`
	Score  float64 `json:"score,omitempty"`
	MS     int64   `json:"ms"`
}

// Rule is a rule that matched.
type Rule struct {
	Name   string        `json:"name"`
	Action policy.Action `json:"action,omitempty"`
	Score  float64       `json:"score,omitempty"`
	Shadow bool          `json:"shadow,omitempty"`
	Stage  policy.Stage  `json:"stage"`
}

// Greylist is a greylisting decision.
type Greylist struct {
	State     string    `json:"state"`
	Key       string    `json:"key,omitempty"`
	Ref       string    `json:"ref,omitempty"`
	FirstSeen time.Time `json:"first_seen,omitzero"`
	PassAt    time.Time `json:"pass_at,omitzero"`
}

// Shadow is a decision that was recorded but not applied, because the
// gateway runs in policy.mode: shadow.
type Shadow struct {
	Action policy.Action `json:"action"`
	Rule   string        `json:"rule"`
	Stage  policy.Stage  `json:"stage"`
	Reply  Reply         `json:"reply"`
}

// Reply is exactly what the client was sent.
type Reply struct {
	Code     int    `json:"code"`
	Enhanced string `json:"enhanced"`
	Text     string `json:"text"`
}

// Relay is the backend leg of a transaction.
type Relay struct {
	Backend string `json:"backend"`
	Code    int    `json:"code,omitempty"`
	// Text is the backend's final reply text, with its queue id.
	Text    string `json:"text,omitempty"`
	QueueID string `json:"queue_id,omitempty"`
	MS      int64  `json:"ms"`
}

// ReplyOf renders a policy reply as sent, with the reference id appended to
// its text exactly as the SMTP boundary does.
func ReplyOf(r *policy.Reply, ref string) Reply {
	return Reply{Code: r.Code, Enhanced: r.EnhancedString(), Text: WithRef(r.Text, ref)}
}

// WithRef appends the reference id to a reply text: "text (ref ID)". Multi-
// line texts get it on the last line. It is the only place the format is
// defined, so the reply and the record always agree.
func WithRef(text, ref string) string {
	if ref == "" {
		return text
	}
	return text + " (ref " + ref + ")"
}
