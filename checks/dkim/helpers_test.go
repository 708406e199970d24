package dkim

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/authres"
	"github.com/emersion/go-msgauth/dkim"

	"github.com/mxgate/mxgate/checks"
	"github.com/mxgate/mxgate/internal/resolver/resolvertest"
)

// message is a checks.Message over a byte slice, split as the spool
// splits: the header section up to and including the empty line, or the
// whole message when it has none.
type message []byte

func (m message) Header() []byte {
	if bytes.HasPrefix(m, []byte("\r\n")) {
		return m[:2]
	}
	if i := bytes.Index(m, []byte("\r\n\r\n")); i >= 0 {
		return m[:i+4]
	}
	return m
}

func (m message) Open() io.Reader { return bytes.NewReader(m) }

// crlf turns a message written with LF (in Go source or a testdata file)
// into the CRLF it is on the wire.
func crlf(s string) []byte {
	return []byte(strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\n", "\r\n"))
}

// plain is the unsigned message most tests sign.
var plain = crlf(`From: Alice <alice@example.test>
To: Bob <bob@example.net>
Subject: Lunch
Date: Mon, 2 Mar 2026 10:00:00 +0000
Message-ID: <lunch-1@example.test>

Hi Bob,

Lunch at noon?

Alice
`)

// testKeys are generated once per test binary: RSA-2048 is slow under
// -race.
var testKeys = sync.OnceValues(func() (*rsa.PrivateKey, ed25519.PrivateKey) {
	r, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	_, e, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return r, e
})

// keyRecord is the TXT record (RFC 6376 §3.6.1) publishing k's public
// key: SubjectPublicKeyInfo for RSA, the raw 32 octets for Ed25519 (RFC
// 8463 §4).
func keyRecord(t testing.TB, k crypto.Signer) string {
	t.Helper()
	switch pub := k.Public().(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)
	}
	t.Fatalf("keyRecord: %T", k)
	return ""
}

// goSign signs msg with go-msgauth, relaxed/relaxed unless o says
// otherwise.
func goSign(t testing.TB, msg []byte, o dkim.SignOptions) []byte {
	t.Helper()
	if o.HeaderCanonicalization == "" {
		o.HeaderCanonicalization = dkim.CanonicalizationRelaxed
	}
	if o.BodyCanonicalization == "" {
		o.BodyCanonicalization = dkim.CanonicalizationRelaxed
	}
	if o.HeaderKeys == nil {
		o.HeaderKeys = []string{"From", "To", "Subject", "Date", "Message-ID"}
	}
	var out bytes.Buffer
	if err := dkim.Sign(&out, bytes.NewReader(msg), &o); err != nil {
		t.Fatalf("dkim.Sign: %v", err)
	}
	return out.Bytes()
}

// run runs a check with a short lookup timeout over msg.
func run(t testing.TB, r *resolvertest.Fake, msg []byte, o Options) checks.Result {
	t.Helper()
	if o.Timeout == 0 {
		o.Timeout = 200 * time.Millisecond
	}
	return New(r, o).Run(context.Background(), checks.Input{Message: message(msg)})
}

// generic returns r.Auth[i] as the GenericResult the check makes.
func generic(t testing.TB, r checks.Result, i int) *authres.GenericResult {
	t.Helper()
	if i >= len(r.Auth) {
		t.Fatalf("Auth has %d results, want at least %d", len(r.Auth), i+1)
	}
	g, ok := r.Auth[i].(*authres.GenericResult)
	if !ok || g.Method != "dkim" {
		t.Fatalf("Auth[%d] = %#v, want a dkim GenericResult", i, r.Auth[i])
	}
	return g
}

// domains returns the dkim.domains fact.
func domains(t testing.TB, r checks.Result) []string {
	t.Helper()
	d, ok := r.Facts["dkim.domains"].([]string)
	if !ok {
		t.Fatalf("dkim.domains is %T (%v), want []string", r.Facts["dkim.domains"], r.Facts["dkim.domains"])
	}
	return d
}

// replace returns msg with the first old replaced, failing when absent.
func replace(t testing.TB, msg []byte, old, new string) []byte {
	t.Helper()
	if !bytes.Contains(msg, []byte(old)) {
		t.Fatalf("message has no %q", old)
	}
	return bytes.Replace(msg, []byte(old), []byte(new), 1)
}
