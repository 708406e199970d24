package e2e

import (
	"math/rand"
	"strings"
	"testing"
)

// The helpers the end-to-end tests judge the gateway with, checked on
// known input.

func TestParseDump(t *testing.T) {
	msg := "Subject: x\r\nMessage-ID: <a@b>\r\n\r\n.body\r\n"
	dump := "X-Client-Addr: 127.0.0.1\nX-Client-Proto: ESMTP\nX-Helo-Args: mx.e2e.test\n" +
		"X-Mail-Args: <s@example.test>\nX-Rcpt-Args: <r@dest.test>\n" +
		"Received: from mx.e2e.test ([127.0.0.1])\n\tby sink.test (smtp-sink) with ESMTP id 1a2b;\n\tSun, 22 Nov 2026 12:00:00 +0000 (UTC)\n" +
		"Received: from client.test ([127.0.0.1])\n\tby mx.e2e.test (mxgate) with ESMTP\n\tid 01M81KJS7RMSNKRRQ51ANCGTFT\n\tfor <r@dest.test>;\n\tSun, 22 Nov 2026 12:00:00 +0000\n" +
		"Authentication-Results: mx.e2e.test;\n\tspf=pass smtp.mailfrom=s@example.test;\n\tdmarc=pass header.from=example.test\n" +
		"X-Spam-Status: No, score=0.0\n" +
		strings.ReplaceAll(msg, "\r\n", "\n") + "\n"
	d := parseDump("test", []byte(dump))
	if d.err != nil || !d.hasData {
		t.Fatalf("parseDump: err %v, hasData %v", d.err, d.hasData)
	}
	if got, want := string(d.content), string(expectedDump([]byte(msg))); got != want {
		t.Errorf("content %q, want %q", got, want)
	}
	if d.msgID != "<a@b>" || d.ref() != "01M81KJS7RMSNKRRQ51ANCGTFT" || len(d.rcpts) != 1 || d.rcpts[0] != "<r@dest.test>" {
		t.Errorf("msgID %q, ref %q, rcpts %q", d.msgID, d.ref(), d.rcpts)
	}
	checkReceived(t, d, "client.test", "r@dest.test")

	// Without the gateway's header, or cut short, it is not a delivery.
	noGW := strings.Replace(dump, "Received: from client.test", "X-Other: from client.test", 1)
	if d := parseDump("test", []byte(noGW)); d.err == nil {
		t.Errorf("a dump without the gateway's Received header parsed")
	}
	mailOnly := "X-Client-Addr: 127.0.0.1\nX-Client-Proto: ESMTP\nX-Mail-Args: <s@example.test>\n"
	if d := parseDump("test", []byte(mailOnly)); d.err == nil || d.hasData {
		t.Errorf("a MAIL-only dump: err %v, hasData %v", d.err, d.hasData)
	}
	cut := dump[:strings.Index(dump, "Message-ID")+15]
	if d := parseDump("test", []byte(cut)); d.msgID != "" {
		t.Errorf("a dump cut inside Message-ID gave msgID %q", d.msgID)
	}
}

func TestDotStuff(t *testing.T) {
	got := string(dotStuff([]byte(".a\r\nb\r\n..\r\n.\r\n")))
	if want := "..a\r\nb\r\n...\r\n..\r\n.\r\n"; got != want {
		t.Errorf("dotStuff = %q, want %q", got, want)
	}
}

func TestGenMessage(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for _, longDots := range []bool{false, true} {
		sawLongDot := false
		for i := range 20 {
			m := string(genMessage(rng, "<x@y>", "r@dest.test", i, 64<<10, longDots))
			if strings.ContainsAny(m, "%\\") || strings.Count(m, "\r\n") != strings.Count(m, "\n") || strings.Count(m, "\r") != strings.Count(m, "\n") {
				t.Fatalf("message with '%%', '\\' or a bare CR/LF")
			}
			for _, l := range strings.Split(strings.TrimSuffix(m, "\r\n"), "\r\n") {
				if len(l) > 998 {
					t.Fatalf("line of %d bytes", len(l))
				}
				if len(l) == 998 && l[0] == '.' {
					sawLongDot = true
				}
			}
		}
		if sawLongDot != longDots {
			t.Errorf("longDots=%v: saw a 998-byte line starting with a dot: %v", longDots, sawLongDot)
		}
	}
}
