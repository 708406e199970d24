package server

import (
	"bufio"
	"bytes"
	"io"
	"net/mail"
	"net/netip"
	"strings"
	"sync"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/policy"
)

// The facts the core provides (docs/policy.md lists them all). Values are
// set where the session learns them; Set only fails for a programmer error
// (an unregistered fact or a value of the wrong type), so its error is
// ignored here and caught by the tests.

// connValues returns a fresh set of facts with what is known about the
// connection: the client and its HELO.
func (st *connState) connValues() *policy.Values {
	v := policy.NewValues()
	st.mu.Lock()
	defer st.mu.Unlock()
	v.Set("client.ip", st.ip)
	v.Set("client.port", st.port)
	if st.conn != nil {
		v.Set("pregreet", st.conn.Pregreet())
	}
	if st.helo != "" {
		v.Set("helo", st.helo)
		v.Set("helo.valid", heloValid(st.helo))
		v.Set("tls", st.tls != nil)
	}
	return v
}

// heloValid reports whether a HELO/EHLO argument is what RFC 5321
// §4.1.1.1 asks for: a fully qualified domain name or an address literal.
func heloValid(h string) bool {
	if lit, ok := strings.CutPrefix(h, "["); ok {
		lit, ok = strings.CutSuffix(lit, "]")
		if !ok {
			return false
		}
		if v6, ok := strings.CutPrefix(lit, "IPv6:"); ok {
			a, err := netip.ParseAddr(v6)
			return err == nil && a.Is6()
		}
		a, err := netip.ParseAddr(lit)
		return err == nil && a.Is4()
	}
	if !strings.Contains(strings.TrimSuffix(h, "."), ".") {
		return false // a bare word is not fully qualified
	}
	_, err := address.ParseRecipient("x@"+h, false)
	return err == nil
}

// setDataValues sets the facts known once the message is in: its size and
// the header.* facts in named (the first field of each name, unfolded). It
// returns the Message-ID and the From address for the verdict record, and
// the number of Received fields (for loop detection).
func setDataValues(v *policy.Values, size int64, header []byte, named map[string]bool) (msgID, from string, received int) {
	v.Set("size", size)
	br := headerReaders.Get().(*bufio.Reader)
	defer headerReaders.Put(br)
	br.Reset(io.MultiReader(bytes.NewReader(header), strings.NewReader("\r\n")))
	m, err := mail.ReadMessage(br)
	br.Reset(nil) // m.Body, the only other user of br, is not read
	if err != nil {
		v.Set("header_from.valid", false)
		return "", "", 0
	}
	received = len(m.Header["Received"])
	froms := m.Header["From"]
	list, lerr := mail.ParseAddressList(strings.Join(froms, ","))
	v.Set("header_from.valid", len(froms) == 1 && lerr == nil && len(list) == 1)
	if len(named) > 0 { // else no fact name need be built per field
		for name, vals := range m.Header {
			if fact := "header." + strings.ToLower(name); len(vals) > 0 && named[fact] {
				v.Set(fact, strings.TrimSpace(vals[0]))
			}
		}
	}
	msgID = clip(strings.TrimSpace(m.Header.Get("Message-Id")), 256)
	v.Set("subject", strings.TrimSpace(m.Header.Get("Subject")))
	v.Set("message_id", msgID)
	raw := m.Header.Get("From")
	from = clip(strings.TrimSpace(raw), 256)
	if a, err := mail.ParseAddress(raw); err == nil {
		from = clip(a.Address, 256)
		if _, dom, ok := strings.Cut(a.Address, "@"); ok {
			v.Set("header_from.domain", strings.ToLower(dom))
		}
	}
	return msgID, from, received
}

// headerReaders saves mail.ReadMessage a 4 KiB bufio.Reader per message:
// bufio.NewReader returns the reader it is given when that is a
// *bufio.Reader of at least its default size.
var headerReaders = sync.Pool{New: func() any { return bufio.NewReader(nil) }}
