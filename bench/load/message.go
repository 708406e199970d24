package main

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/dkim"
)

// fillLines are the body text, used in turn. Each is at most 76 characters
// so that a body line stays under 78 with its CRLF; one starts with a dot so
// that every message exercises transparency (RFC 5321 §4.5.2).
var fillLines = []string{
	"The quick brown fox jumps over the lazy dog while the benchmark is running.",
	"Pack my box with five dozen liquor jugs; then send it again, and again.",
	".This line starts with a dot, which the client doubles on the wire.",
	"Sphinx of black quartz, judge my vow. How vexingly quick daft zebras jump!",
	"0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789",
}

// minLine is the whole body when -size leaves no room for more.
const minLine = "This is a load test message."

// buildMessage returns the message: the headers and a plain ASCII body of
// CRLF-ended lines, size bytes in all when size is larger than the headers
// and one short line (otherwise the message is that long).
func buildMessage(from, to string, size int, date time.Time) []byte {
	var b bytes.Buffer
	b.Grow(size + 64)
	fmt.Fprintf(&b, "Date: %s\r\n", date.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\n", from, to)
	b.WriteString("Subject: mxgate load test\r\n")
	fmt.Fprintf(&b, "Message-ID: <load@%s>\r\n", domainOf(from))
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n")
	if size-b.Len() < len(minLine)+2 {
		b.WriteString(minLine + "\r\n")
		return b.Bytes()
	}
	for i := 0; b.Len() < size; i++ {
		left := size - b.Len() - 2 // room for the text of this line
		line := fillLines[i%len(fillLines)]
		n := min(len(line), left)
		if left-n == 1 {
			n-- // leave room for an empty line, not for a lone byte
		}
		line = line[:n]
		if strings.HasSuffix(line, " ") {
			line = line[:n-1] + "-"
		}
		b.WriteString(line + "\r\n")
	}
	return b.Bytes()
}

// dotStuff returns msg as it goes on the wire after DATA: every line that
// starts with '.' gets another one (RFC 5321 §4.5.2), and the end-of-data
// marker follows, so that the last line's CRLF and ".\r\n" make CRLF.CRLF.
func dotStuff(msg []byte) []byte {
	out := make([]byte, 0, len(msg)+len(msg)/32+5)
	for len(msg) > 0 {
		line := msg
		if i := bytes.IndexByte(msg, '\n'); i >= 0 {
			line = msg[:i+1]
		}
		if line[0] == '.' {
			out = append(out, '.')
		}
		out = append(out, line...)
		msg = msg[len(line):]
	}
	if len(out) > 0 && !bytes.HasSuffix(out, []byte("\r\n")) {
		out = append(out, "\r\n"...)
	}
	return append(out, ".\r\n"...)
}

// prepareMessage builds the message and, with -dkim-key, signs it. The
// signature is counted in -size: the body is shortened by its length and
// the message signed again (a signature's length depends only on the key).
func prepareMessage(cfg *config, now time.Time) ([]byte, error) {
	msg := buildMessage(cfg.From, cfg.To, cfg.Size, now)
	if cfg.DKIMKey == "" {
		return msg, nil
	}
	key, err := loadKey(cfg.DKIMKey)
	if err != nil {
		return nil, err
	}
	signed, err := signMessage(msg, key, cfg.DKIMDomain, cfg.DKIMSelector)
	if err != nil {
		return nil, err
	}
	if over := len(signed) - cfg.Size; over > 0 && len(msg) == cfg.Size {
		msg = buildMessage(cfg.From, cfg.To, cfg.Size-over, now)
		signed, err = signMessage(msg, key, cfg.DKIMDomain, cfg.DKIMSelector)
	}
	return signed, err
}

// loadKey reads a PEM private key for DKIM: RSA in PKCS#1 or PKCS#8, or
// Ed25519 in PKCS#8 (RFC 8463).
func loadKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("-dkim-key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("-dkim-key %s: no PEM block", path)
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("-dkim-key %s: not an unencrypted PKCS#1 or PKCS#8 private key (%s): %v", path, block.Type, err)
	}
	switch k := k.(type) {
	case *rsa.PrivateKey:
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("-dkim-key %s: a %T; DKIM signs with RSA or Ed25519", path, k)
}

// signedHeaders are the header fields the signature covers.
var signedHeaders = []string{"From", "To", "Subject", "Date", "Message-ID"}

// signMessage prepends a DKIM-Signature (RFC 6376), relaxed/relaxed with
// SHA-256.
func signMessage(msg []byte, key crypto.Signer, domain, selector string) ([]byte, error) {
	var b bytes.Buffer
	err := dkim.Sign(&b, bytes.NewReader(msg), &dkim.SignOptions{
		Domain:                 domain,
		Selector:               selector,
		Signer:                 key,
		Hash:                   crypto.SHA256,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization:   dkim.CanonicalizationRelaxed,
		HeaderKeys:             signedHeaders,
	})
	if err != nil {
		return nil, fmt.Errorf("dkim: %w", err)
	}
	return b.Bytes(), nil
}
