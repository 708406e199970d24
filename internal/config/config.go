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
	// TLS is the certificate for STARTTLS offered to clients.
	TLS TLS `yaml:"tls"`
	// Admin is the HTTP listener for /metrics, /healthz and /readyz.
	Admin Admin `yaml:"admin"`
	// Limits bound what one client can make the gateway do.
	Limits Limits `yaml:"limits"`
	// Message controls how message data is buffered and canonicalised.
	Message Message `yaml:"message"`
	// DNS is the resolver every check uses; the system resolver is used only
	// when Servers is empty.
	DNS DNS `yaml:"dns"`
	// Checks configures the connection checks (DNSBL, FCrDNS, HELO,
	// pre-greeting, IP lists, rate limits).
	Checks Checks `yaml:"checks"`
	// Policy is the operator's rules, scores and thresholds
	// (docs/policy.md).
	Policy Policy `yaml:"policy"`
	// VerdictLog is where one JSON record per transaction goes.
	VerdictLog VerdictLog `yaml:"verdict_log"`
	// Log configures operational logging (slog JSON on stderr).
	Log Log `yaml:"log"`
	// DataDir holds the gateway's own files (the embedded greylist store).
	DataDir string `yaml:"data_dir"`
	// ShutdownGrace is how long SIGTERM/SIGINT wait for transactions in
	// flight before every connection is closed.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
}

// TLS configures inbound STARTTLS (RFC 3207). Empty Cert and Key: no
// STARTTLS. The files are read again when they change (certbot renewals),
// without a restart.
type TLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// Admin configures the admin HTTP listener; off when Listen is empty.
type Admin struct {
	// Listen is host:port, loopback unless you mean otherwise.
	Listen string `yaml:"listen"`
	// Pprof serves Go's runtime profiles under /debug/pprof/ on the admin
	// listener, for profiling a gateway under load.
	Pprof bool `yaml:"pprof"`
}

// Listener is one listening address.
type Listener struct {
	// Address is host:port; ":25" listens on every address.
	Address string `yaml:"address"`
	// ProxyProtocol, when its trusted list is set, requires a PROXY
	// protocol v1 or v2 header from those sources (a load balancer) and
	// takes the client address from it.
	ProxyProtocol ProxyProtocol `yaml:"proxy_protocol"`
}

// ProxyProtocol configures PROXY protocol v1/v2 on a listener.
type ProxyProtocol struct {
	// Trusted lists the CIDRs allowed to send a PROXY header; connections
	// from elsewhere are refused. Empty: PROXY protocol is off.
	Trusted []string `yaml:"trusted"`
	// Timeout bounds the wait for the header.
	Timeout time.Duration `yaml:"timeout"`
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
	// ClientIdentity passes the real client's address, name and HELO to
	// the backend with XCLIENT or XFORWARD (Postfix) when it advertises
	// one: "auto" or "off".
	ClientIdentity string `yaml:"client_identity"`
	// Chunking sends each message as one BDAT chunk (RFC 3030) when the
	// backend offers CHUNKING: "auto" or "off" (always DATA).
	Chunking string `yaml:"chunking"`
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
	// MaxReceived is the most Received header fields a message may carry;
	// more means a mail loop (RFC 5321 §6.3): 554 5.4.6.
	MaxReceived int `yaml:"max_received"`
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
	// Attempts is how many times a query is tried, across the servers in
	// turn, before it fails.
	Attempts int `yaml:"attempts"`
	// Cache bounds the answer cache.
	Cache DNSCache `yaml:"cache"`
}

// DNSCache bounds the resolver's cache. Answers are kept for their own
// TTL (negative ones for the SOA minimum), clamped to [MinTTL, MaxTTL].
type DNSCache struct {
	Size   int           `yaml:"size"`
	MinTTL time.Duration `yaml:"min_ttl"`
	MaxTTL time.Duration `yaml:"max_ttl"`
}

// Checks configures the checks that run during the SMTP dialogue.
type Checks struct {
	// Timeout is the overall deadline of one stage's checks.
	Timeout   time.Duration `yaml:"timeout"`
	DNSBL     DNSBL         `yaml:"dnsbl"`
	FCrDNS    Toggle        `yaml:"fcrdns"`
	Helo      Toggle        `yaml:"helo"`
	SPF       Toggle        `yaml:"spf"`
	DKIM      DKIM          `yaml:"dkim"`
	DMARC     Toggle        `yaml:"dmarc"`
	Pregreet  Pregreet      `yaml:"pregreet"`
	Protocol  Protocol      `yaml:"protocol"`
	IPLists   []IPList      `yaml:"iplists"`
	RateLimit RateLimit     `yaml:"ratelimit"`
	Greylist  Greylist      `yaml:"greylist"`
}

// Greylist configures greylisting (RFC 6647), keyed on the sender's
// organisation when it is authenticated, so pools of sending addresses
// retry as one (docs/greylisting.md).
type Greylist struct {
	// Enabled turns greylisting on. With When "suspicious" it acts only
	// where the policy says greylist (a rule or thresholds.greylist).
	Enabled bool `yaml:"enabled"`
	// When is "suspicious" (only when the policy says greylist) or
	// "always" (every transaction not exempted).
	When string `yaml:"when"`
	// Store is "memory", "bbolt:PATH" (relative to data_dir) or
	// "redis://host:port/db" (shared by several gateways).
	Store string `yaml:"store"`
	// Delay before a retry passes; RetryWindow after the first attempt in
	// which it must come; AllowFor a client is let through without
	// greylisting after it passed (refreshed on each pass).
	Delay       time.Duration `yaml:"delay"`
	RetryWindow time.Duration `yaml:"retry_window"`
	AllowFor    time.Duration `yaml:"allow_for"`
	// PrefixV4 and PrefixV6 group unauthenticated clients by network.
	PrefixV4 int `yaml:"prefix_v4"`
	PrefixV6 int `yaml:"prefix_v6"`
	// SkipSPFPass exempts senders whose SPF passes (their retries come
	// from the same organisation anyway).
	SkipSPFPass bool `yaml:"skip_spf_pass"`
}

// DKIM configures DKIM verification (RFC 6376).
type DKIM struct {
	Enabled bool `yaml:"enabled"`
	// MaxSignatures bounds the signatures verified per message: each
	// costs a DNS lookup and a public-key operation.
	MaxSignatures int `yaml:"max_signatures"`
}

// Toggle switches a check on or off.
type Toggle struct {
	Enabled bool `yaml:"enabled"`
}

// DNSBL configures DNS block and allow lists (RFC 5782).
type DNSBL struct {
	// Zones are IP-based lists; a negative weight makes an allow list.
	Zones []DNSBLZone `yaml:"zones"`
	// Domains are domain-based lists (RHSBL), queried with the HELO name
	// and the MAIL FROM domain.
	Domains []RHSBLZone `yaml:"domains"`
	// HealthInterval is how often every zone is probed (RFC 5782 §5:
	// 127.0.0.2 must be listed, 127.0.0.1 must not); a zone that fails is
	// skipped until it passes again. 0: probe only at start.
	HealthInterval time.Duration `yaml:"health_interval"`
}

// DNSBLZone is one IP-based list.
type DNSBLZone struct {
	// Zone is the DNS zone queried; it may contain a private key (Spamhaus
	// DQS), so it never appears in replies, records or metrics.
	Zone string `yaml:"zone"`
	// Name is what replies, records and metrics call the list; defaults
	// to the zone when the zone holds no key.
	Name string `yaml:"name"`
	// Weight is added to dnsbl.score when the client is listed.
	Weight float64 `yaml:"weight"`
	// Answers are the answers that count as a listing, each with an
	// optional weight and reply text of its own. Empty: any 127.0.0.0/8
	// answer except 127.255.255.0/24.
	Answers []DNSBLAnswer `yaml:"answers"`
}

// DNSBLAnswer is an answer (an address or a CIDR) that counts as listed.
type DNSBLAnswer struct {
	Match  string        `yaml:"match"`
	Weight OptionalScore `yaml:"weight"`
	// Text replaces the reply text when this answer decides a reject.
	Text string `yaml:"text"`
}

// RHSBLZone is one domain-based list.
type RHSBLZone struct {
	Zone    string        `yaml:"zone"`
	Name    string        `yaml:"name"`
	Weight  float64       `yaml:"weight"`
	Answers []DNSBLAnswer `yaml:"answers"`
	// On says which names are looked up: "helo", "mail_from".
	On []string `yaml:"on"`
}

// Pregreet configures the pre-greeting test: the banner is held back
// while the connection checks run, and a client that talks first is an
// early talker (no real MTA does that: RFC 5321 §3.1).
type Pregreet struct {
	// Wait is how long the banner is held, 0 to 6 s.
	Wait time.Duration `yaml:"wait"`
	// Action for an early talker: "ignore", "enforce" (reject at the
	// first RCPT, so the envelope is recorded) or "drop" (521 and close).
	Action string `yaml:"action"`
	// Teaser sends the first line of a multi-line banner ("220-") at
	// once, as postscreen does, to catch clients that do not wait for the
	// last line.
	Teaser bool `yaml:"teaser"`
}

// Protocol configures the protocol checks.
type Protocol struct {
	// NonSMTP is what happens to a client that sends HTTP or other
	// non-SMTP commands: "drop" or "ignore".
	NonSMTP string `yaml:"non_smtp"`
	// EarlyPipelining is what happens to a client that sends commands
	// ahead of the replies before PIPELINING was offered (after HELO, or
	// before EHLO): "ignore", "enforce" (reject at RCPT) or "drop".
	EarlyPipelining string `yaml:"early_pipelining"`
}

// IPList is a named list of networks; the fact client.iplists holds the
// names of the lists the client is in, for rules.
type IPList struct {
	Name  string   `yaml:"name"`
	CIDRs []string `yaml:"cidrs"`
	// File holds more CIDRs, one per line (# comments); read at start and
	// on every reload.
	File string `yaml:"file"`
}

// RateLimit configures per-client rate limits. A client is its IPv4
// address or its IPv6 /64.
type RateLimit struct {
	// Connections per client: over it, 421 4.7.0 at connect.
	Connections Rate `yaml:"connections"`
	// Messages per client: over it, 451 4.7.1 at MAIL.
	Messages Rate `yaml:"messages"`
	// Recipients per client: over it, 451 4.7.1 at RCPT.
	Recipients Rate `yaml:"recipients"`
}

// Rate is a limit per interval; a limit of 0 is no limit.
type Rate struct {
	Limit int           `yaml:"limit"`
	Per   time.Duration `yaml:"per"`
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
			RetryDown:      10 * time.Second,
			ClientIdentity: "auto",
			Chunking:       "auto",
		},
		Limits: Limits{
			MaxMessageSize:      25 << 20,
			MaxRecipients:       100,
			MaxLineLength:       1000,
			MaxReceived:         50,
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
		Policy: Policy{Mode: "enforce", DefaultRules: true, DelayReject: true},
		DNS: DNS{
			Timeout:  2 * time.Second,
			Attempts: 3,
			Cache:    DNSCache{Size: 50000, MinTTL: 10 * time.Second, MaxTTL: time.Hour},
		},
		Checks: Checks{
			Timeout:  10 * time.Second,
			DNSBL:    DNSBL{HealthInterval: 5 * time.Minute},
			FCrDNS:   Toggle{Enabled: true},
			Helo:     Toggle{Enabled: true},
			SPF:      Toggle{Enabled: true},
			DKIM:     DKIM{Enabled: true, MaxSignatures: 5},
			DMARC:    Toggle{Enabled: true},
			Pregreet: Pregreet{Action: "enforce"},
			Protocol: Protocol{NonSMTP: "drop", EarlyPipelining: "enforce"},
			Greylist: Greylist{
				Enabled: true, When: "suspicious", Store: "bbolt:greylist.db",
				Delay: 5 * time.Minute, RetryWindow: 48 * time.Hour, AllowFor: 35 * 24 * time.Hour,
				PrefixV4: 24, PrefixV6: 64,
			},
			RateLimit: RateLimit{
				Connections: Rate{Per: time.Minute},
				Messages:    Rate{Per: time.Hour},
				Recipients:  Rate{Per: time.Hour},
			},
		},
		DataDir:       "/var/lib/mxgate",
		VerdictLog:    VerdictLog{Path: "-"},
		Log:           Log{Level: "info"},
		ShutdownGrace: 30 * time.Second,
	}
}
