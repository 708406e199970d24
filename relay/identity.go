package relay

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/mxgate/mxgate/internal/verdict"
)

// Values of config.Backend.ClientIdentity.
const (
	identityAuto = "auto"
	identityOff  = "off"
)

// Values of config.Backend.Chunking.
const (
	chunkingAuto = "auto"
	chunkingOff  = "off"
)

// unavailable is the XFORWARD/XCLIENT value for "not known".
const unavailable = "[UNAVAILABLE]"

// maxAttrValue is the longest attribute value, xtext-encoded, that Postfix
// takes (XFORWARD_README, XCLIENT_README: 255); longer ones are sent as
// [UNAVAILABLE].
const maxAttrValue = 255

// maxCmdLine is the longest command line without CRLF (RFC 5321
// §4.5.3.1.4: 512 octets with it).
const maxCmdLine = 510

// identityWarnEvery limits the warnings about a backend refusing XFORWARD
// or XCLIENT to one per server per interval; the others are logged at
// debug level. A backend that refuses one client's identity usually
// refuses many (an IPv4-only Postfix refuses every IPv6 ADDR).
const identityWarnEvery = time.Minute

// ClientIdentity is the SMTP client a message came from, which the backend
// would otherwise know only as the gateway: it is passed on with XFORWARD
// or XCLIENT (Postfix) when the backend advertises one, so that the
// backend's logs, and with XCLIENT its Received header and access rules,
// name the real client.
type ClientIdentity struct {
	Addr netip.Addr // invalid: unknown
	Port int        // 0: unknown
	// Name is the client's forward-confirmed reverse DNS name, or
	// "[UNAVAILABLE]" (or "") when there is none: an unconfirmed PTR name
	// must not be passed on as the client's name.
	Name  string
	Helo  string // as the client gave it; "" when unknown
	Proto string // "ESMTP", or "ESMTPS" after STARTTLS; "" when unknown
}

// ClientIdentityOf returns the identity of the client c describes: Name is
// its PTR name only when the FCrDNS check confirmed it, Proto is ESMTPS
// when the client used TLS.
func ClientIdentityOf(c verdict.Client) *ClientIdentity {
	id := &ClientIdentity{Port: c.Port, Name: unavailable, Helo: c.Helo, Proto: "ESMTP"}
	if a, err := netip.ParseAddr(c.IP); err == nil {
		id.Addr = a
	}
	if c.FCrDNS != nil && *c.FCrDNS && c.PTR != "" {
		id.Name = strings.TrimSuffix(c.PTR, ".")
	}
	if c.TLS != nil {
		id.Proto = "ESMTPS"
	}
	return id
}

// attr is one NAME=value of XFORWARD or XCLIENT, value xtext-encoded.
type attr struct{ name, value string }

// attrs returns the attributes the backend advertised (names, from its
// EHLO keyword's parameters) that we know, in the order of Postfix's
// READMEs. XCLIENT takes PROTO SMTP or ESMTP only (Postfix answers 501 to
// ESMTPS) and does not know SOURCE.
func (id *ClientIdentity) attrs(xclient bool, names string) []attr {
	offered := map[string]bool{}
	for n := range strings.FieldsSeq(names) {
		offered[strings.ToUpper(n)] = true
	}
	addr := unavailable
	if a := id.Addr.Unmap().WithZone(""); a.Is4() {
		addr = a.String()
	} else if a.Is6() {
		// Postfix takes an IPv6 address with the prefix only, in XFORWARD
		// as in XCLIENT ("501 5.5.4 Bad ADDR syntax" without it).
		addr = "IPv6:" + a.String()
	}
	port := unavailable
	if id.Port > 0 && id.Port <= 65535 {
		port = strconv.Itoa(id.Port)
	}
	proto := id.Proto
	if xclient && strings.HasPrefix(strings.ToUpper(proto), "ESMTP") {
		proto = "ESMTP"
	} else if xclient && !strings.EqualFold(proto, "SMTP") {
		proto = ""
	}
	all := []attr{
		{"NAME", id.Name},
		{"ADDR", addr},
		{"PORT", port},
		{"PROTO", proto},
		{"HELO", id.Helo},
	}
	if !xclient {
		all = append(all, attr{"SOURCE", "REMOTE"})
	}
	var out []attr
	for _, a := range all {
		if !offered[a.name] {
			continue
		}
		v := xtext(a.value)
		if a.value == "" || strings.EqualFold(a.value, unavailable) || len(v) > maxAttrValue {
			v = unavailable
		}
		out = append(out, attr{a.name, v})
	}
	return out
}

// xtext encodes s as RFC 3461 §4 xtext: "+" and "=" and every byte outside
// "!".."~" become "+" and two upper-case hex digits.
func xtext(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '!' || c > '~' || c == '+' || c == '=' {
			b.WriteByte('+')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// commandLines puts attrs into as few lines "verb NAME=value ..." of at
// most maxCmdLine octets as it takes (XFORWARD_README: the client must
// split what does not fit in one).
func commandLines(verb string, attrs []attr) []string {
	var lines []string
	var b strings.Builder
	for _, a := range attrs {
		kv := a.name + "=" + a.value
		if b.Len() > 0 && b.Len()+1+len(kv) > maxCmdLine {
			lines = append(lines, b.String())
			b.Reset()
		}
		if b.Len() == 0 {
			b.WriteString(verb)
		}
		b.WriteString(" " + kv)
	}
	if b.Len() > 0 {
		lines = append(lines, b.String())
	}
	return lines
}

// fitOneLine shortens the longest values to [UNAVAILABLE] until the
// command fits in one line: XCLIENT must be one command, since Postfix
// does not let a client that has changed its identity change it again.
func fitOneLine(verb string, attrs []attr) string {
	for {
		lines := commandLines(verb, attrs)
		if len(lines) <= 1 {
			if len(lines) == 0 {
				return ""
			}
			return lines[0]
		}
		// The last of the longest: NAME and ADDR matter more than HELO.
		longest := 0
		for i, a := range attrs {
			if len(a.value) >= len(attrs[longest].value) {
				longest = i
			}
		}
		attrs[longest].value = unavailable
	}
}

// identify passes the client's identity to the backend before MAIL:
// XFORWARD when advertised, else XCLIENT when advertised, else nothing.
//
// XFORWARD is preferred. Its attributes hold for the next transaction only
// (the server forgets them after the final dot or RSET), so the connection
// goes back to the pool as it came. XCLIENT changes the identity of the
// whole session, and Postfix lets a client use it only once per session
// (the new identity is not an authorized XCLIENT client: it no longer
// advertises XCLIENT, and answers a second one with 550), so a connection
// that sent XCLIENT carries one transaction and is then closed rather than
// pooled (conn.xclient). XCLIENT restarts the session: the server answers
// 220 and the client must greet with EHLO again, which it does with the
// client's HELO name.
//
// A refusal is logged and the mail goes on without: the identity is worth
// having but not worth a message. Only what breaks the connection (a
// transport failure, a 421) is returned, to be taken as MAIL's failure.
func (t *Txn) identify(ctx context.Context, id *ClientIdentity) error {
	c := t.c
	if id == nil || t.p.cfg.ClientIdentity == identityOff {
		return nil
	}
	if ok, names := c.client.Extension("XFORWARD"); ok {
		return t.xforward(ctx, id, names)
	}
	if ok, names := c.client.Extension("XCLIENT"); ok {
		return t.xclient(ctx, id, names)
	}
	return nil
}

func (t *Txn) xforward(ctx context.Context, id *ClientIdentity, names string) error {
	attrs := id.attrs(false, names)
	if len(attrs) == 0 {
		return nil
	}
	for _, line := range commandLines("XFORWARD", attrs) {
		start := time.Now()
		_, _, err := t.c.cc.cmd(t.p.cfg.Timeouts.Command, line)
		t.logExchange("XFORWARD", start, classify(ctx, err, ""))
		if err := t.identityRefused("XFORWARD", line, err); err != nil {
			return err
		}
	}
	return nil
}

func (t *Txn) xclient(ctx context.Context, id *ClientIdentity, names string) error {
	line := fitOneLine("XCLIENT", id.attrs(true, names))
	if line == "" {
		return nil
	}
	c := t.c
	// Whatever the answer, the session may now be someone else's.
	c.xclient = true
	start := time.Now()
	_, _, err := c.cc.cmd(t.p.cfg.Timeouts.Command, line)
	t.logExchange("XCLIENT", start, classify(ctx, err, ""))
	if err != nil {
		return t.identityRefused("XCLIENT", line, err)
	}
	// The 220 was the new session's greeting: a new client reads it
	// (replayed) and says EHLO. (Should a server answer 250 and not restart
	// the session, the EHLO does no harm.) The EHLO names the client as it
	// named itself, as in XCLIENT_README's example: the server takes the
	// HELO name from the EHLO after XCLIENT, not from XCLIENT's HELO.
	c.cc.replayGreeting()
	cl := smtp.NewClient(c.cc)
	cl.CommandTimeout = t.p.cfg.Timeouts.Command
	cl.SubmissionTimeout = t.p.cfg.Timeouts.Final
	c.client = cl
	helo := id.Helo
	if !plainToken(helo) {
		helo = t.p.helo
	}
	start = time.Now()
	err = cl.Hello(helo)
	t.logExchange("EHLO", start, classify(ctx, err, ""))
	return err
}

// plainToken reports whether s is non-empty printable ASCII without
// spaces: an EHLO argument as a client may have given it.
func plainToken(s string) bool {
	if s == "" || len(s) > maxAttrValue {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// identityRefused logs a refusal of XFORWARD or XCLIENT and returns nil,
// unless err broke the connection.
func (t *Txn) identityRefused(verb, line string, err error) error {
	if err == nil {
		return nil
	}
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code == 421 || se.Code/100 < 4 {
		return err
	}
	msg := "backend refused " + verb + "; relaying without the client's identity"
	args := []any{"backend", t.backend, "command", line, "reply", se.Error()}
	if t.p.identityWarnDue(t.c.srv) {
		t.log.Warn(msg, args...)
	} else {
		t.log.Debug(msg, args...)
	}
	return nil
}

// identityWarnDue reports whether a refusal of the client's identity by s
// is to be logged as a warning, and if so notes the time.
func (p *Pool) identityWarnDue(s *server) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if !s.identityWarned.IsZero() && now.Sub(s.identityWarned) < identityWarnEvery {
		return false
	}
	s.identityWarned = now
	return true
}
