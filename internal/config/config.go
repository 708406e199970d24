// Package config loads and validates mxgate's YAML configuration.
//
// The file is decoded strictly: an unknown key is an error, every error names
// file:line and the key path, and all errors are reported at once
// (design.md §4 "Configuration"). Defaults live in one Go literal, Default().
package config

import (
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/mxgate/mxgate/policy"
)

// Config is the whole configuration file.
type Config struct {
	// Hostname names this gateway in the SMTP banner, the EHLO it sends to the
	// backend and the Received header it adds.
	Hostname string `yaml:"hostname"`
	// Listen is every address the gateway accepts SMTP connections on.
	Listen []Listener `yaml:"listen"`
	// Domains are the mail domains the gateway accepts recipients for. Any
	// other recipient domain gets 550 5.7.1 (no open relay).
	Domains []string `yaml:"domains"`
	// Backend is the mail server that accepted mail is relayed to.
	Backend Backend `yaml:"backend"`
	// Limits bound what one client can make the gateway do.
	Limits Limits `yaml:"limits"`
	// Message controls how message data is buffered and canonicalised.
	Message Message `yaml:"message"`
	// DNS is the resolver every check uses; the system resolver is used only
	// when Servers is empty.
	DNS DNS `yaml:"dns"`
	// Policy is the operator's rules, scores and thresholds
	// (docs/policy.md).
	Policy Policy `yaml:"policy"`
	// VerdictLog is where one JSON record per transaction goes.
	VerdictLog VerdictLog `yaml:"verdict_log"`
	// Log configures operational logging (slog JSON on stderr).
	Log Log `yaml:"log"`
	// ShutdownGrace is how long SIGTERM/SIGINT wait for transactions in
	// flight before every connection is closed.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
}

// Listener is one listening address.
type Listener struct {
	// Address is host:port; ":25" listens on every address.
	Address string `yaml:"address"`
}

// Backend describes the mail server behind the gateway.
type Backend struct {
	// Servers are host:port addresses, tried in order; the next one is used
	// when one is unreachable.
	Servers []string `yaml:"servers"`
	// Helo is the name sent in EHLO to the backend; defaults to Hostname.
	Helo     string          `yaml:"helo"`
	TLS      BackendTLS      `yaml:"tls"`
	Timeouts BackendTimeouts `yaml:"timeouts"`
	Pool     Pool            `yaml:"pool"`
	// RetryDown is how long a backend server that refused a connection is
	// skipped before it is tried again (while another one is available).
	RetryDown time.Duration `yaml:"retry_down"`
}

// BackendTLS configures STARTTLS towards the backend.
type BackendTLS struct {
	// Mode is "none", "opportunistic" (use STARTTLS when advertised) or
	// "required" (fail, with 4xx to the client, when TLS cannot be had).
	Mode string `yaml:"mode"`
	// CAFile is a PEM bundle to verify the backend certificate against;
	// empty means the system roots.
	CAFile string `yaml:"ca_file"`
	// ServerName is the name expected in the backend certificate; defaults
	// to the host part of the server address.
	ServerName string `yaml:"server_name"`
	// Verify checks the backend certificate. With "opportunistic", leave it
	// false unless the backend has a certificate for ServerName.
	Verify bool `yaml:"verify"`
}

// BackendTimeouts are per-phase deadlines on the backend connection.
type BackendTimeouts struct {
	Connect time.Duration `yaml:"connect"` // TCP connect, greeting and EHLO
	Command time.Duration `yaml:"command"` // each of MAIL, RCPT, RSET, DATA (354)
	Data    time.Duration `yaml:"data"`    // writing the message body
	Final   time.Duration `yaml:"final"`   // the reply after the final dot
}

// Pool bounds the reuse of backend connections.
type Pool struct {
	// MaxIdle is the number of idle connections kept per backend server.
	MaxIdle int `yaml:"max_idle"`
	// MaxOpen caps backend connections in total (idle and in use); a
	// transaction that cannot get one within Timeouts.Connect gets 451 4.4.1.
	MaxOpen int `yaml:"max_open"`
	// IdleTimeout closes connections idle for longer.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxMessages closes a connection after this many messages.
	MaxMessages int `yaml:"max_messages"`
}

// Limits bound the SMTP dialogue with one client.
type Limits struct {
	// MaxMessageSize is advertised with SIZE and enforced while the body
	// streams in (552 5.3.4). Accepts "25MiB", "10MB" or bytes.
	MaxMessageSize Size `yaml:"max_message_size"`
	// MaxRecipients per transaction; more get 452 4.5.3.
	MaxRecipients int `yaml:"max_recipients"`
	// MaxLineLength in bytes including CRLF, for commands and message lines
	// (RFC 5321 §4.5.3.1.6: 1000). A longer line ends the session.
	MaxLineLength int `yaml:"max_line_length"`
	// CommandTimeout is how long the gateway waits for each command.
	CommandTimeout time.Duration `yaml:"command_timeout"`
	// DataTimeout is how long the gateway waits for each read of message
	// data: an idle timeout, not a limit on the whole DATA.
	DataTimeout time.Duration `yaml:"data_timeout"`
	// SessionTimeout caps a whole connection, however active.
	SessionTimeout time.Duration `yaml:"session_timeout"`
	// MaxConnections in total; more get 421 4.7.0 and are closed.
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerIP from one client address; more get 421 4.7.0.
	MaxConnectionsPerIP int `yaml:"max_connections_per_ip"`
}

// Message controls message buffering and canonicalisation.
type Message struct {
	// MemoryBuffer is how much of a message is held in memory before the
	// rest goes to a temporary file.
	MemoryBuffer Size `yaml:"memory_buffer"`
	// TempDir holds the temporary files; empty means the system default.
	TempDir string `yaml:"temp_dir"`
	// BareNewline is "reject" (550 5.6.0) or "normalize" (turn a bare CR
	// or LF into CRLF) for line breaks that are not CRLF.
	BareNewline string `yaml:"bare_newline"`
	// NUL is "reject" (550 5.6.0) or "strip" for NUL bytes in the message.
	NUL string `yaml:"nul"`
}

// DNS configures the resolver.
type DNS struct {
	// Servers are host:port addresses of recursive resolvers.
	Servers []string `yaml:"servers"`
	// Timeout per query.
	Timeout time.Duration `yaml:"timeout"`
}

// VerdictLog configures the verdict record stream.
type VerdictLog struct {
	// Path is a file (appended to, reopened on SIGHUP) or "-" for stdout.
	Path string `yaml:"path"`
}

// Log configures operational logs.
type Log struct {
	// Level is "debug", "info", "warn" or "error".
	Level string `yaml:"level"`
}

// Policy configures the rule engine.
type Policy struct {
	// Mode is "enforce", or "shadow": the whole gateway only observes,
	// relays everything and records what it would have done.
	Mode string `yaml:"mode"`
	// DefaultRules loads the rule set built into the binary
	// (rules/default.yaml) after the operator's own rules.
	DefaultRules bool `yaml:"default_rules"`
	// Include lists globs of rule files, relative to the configuration
	// file's folder, loaded after Rules in glob order.
	Include []string `yaml:"include"`
	// Rules are evaluated first, in order.
	Rules RuleList `yaml:"rules"`
	// Thresholds turn the score into an action; each is optional.
	Thresholds Thresholds `yaml:"thresholds"`
	// DelayReject delivers rejects decided at connect, HELO or MAIL at the
	// first RCPT, so the envelope is recorded (postscreen's "enforce",
	// Haraka's delay_deny). A drop always closes at once.
	DelayReject bool `yaml:"delay_reject"`
	// SubjectTag, when set, is prefixed to the Subject of tagged messages.
	SubjectTag string `yaml:"subject_tag"`

	// Engine is the compiled policy: every rule of every source, checked.
	// Load sets it.
	Engine *policy.Engine `yaml:"-"`
}

// Thresholds are the score thresholds; an absent one does not apply.
type Thresholds struct {
	Tag      OptionalScore `yaml:"tag"`
	Greylist OptionalScore `yaml:"greylist"`
	Reject   OptionalScore `yaml:"reject"`
}

// OptionalScore is a number that may be left out.
type OptionalScore struct {
	Set   bool
	Value float64
}

// RuleList keeps the rules' YAML as it is, with its line numbers, for the
// rule parser (package policy), which reports every problem at once.
type RuleList struct {
	Node *yaml.Node
}

// Size is a byte count that YAML may give as an integer or as a string with
// a unit: "512KiB", "25MiB", "1GiB", "10MB", "100kB".
type Size int64

// Default returns the built-in defaults, the one place they are defined.
// Keys the file leaves out keep these values.
func Default() Config {
	return Config{
		Listen: []Listener{{Address: ":25"}},
		Backend: Backend{
			TLS: BackendTLS{Mode: "none"},
			Timeouts: BackendTimeouts{
				Connect: 10 * time.Second,
				Command: 2 * time.Minute,
				Data:    5 * time.Minute,
				Final:   10 * time.Minute,
			},
			Pool: Pool{
				MaxIdle:     16,
				MaxOpen:     500,
				IdleTimeout: 30 * time.Second,
				MaxMessages: 100,
			},
			RetryDown: 10 * time.Second,
		},
		Limits: Limits{
			MaxMessageSize:      25 << 20,
			MaxRecipients:       100,
			MaxLineLength:       1000,
			CommandTimeout:      5 * time.Minute,
			DataTimeout:         3 * time.Minute,
			SessionTimeout:      30 * time.Minute,
			MaxConnections:      1000,
			MaxConnectionsPerIP: 20,
		},
		Message: Message{
			MemoryBuffer: 1 << 20,
			BareNewline:  "reject",
			NUL:          "reject",
		},
		Policy:        Policy{Mode: "enforce", DefaultRules: true, DelayReject: true},
		DNS:           DNS{Timeout: 5 * time.Second},
		VerdictLog:    VerdictLog{Path: "-"},
		Log:           Log{Level: "info"},
		ShutdownGrace: 30 * time.Second,
	}
}
