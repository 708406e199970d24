package demo

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"
)

// example is one transaction of the tour.
type example struct {
	title string
	steps []string      // client lines; "DATA:" + body sends DATA and the body as raw bytes
	helo  string        // "" = client.sender.test
	from  string        // the client's address on loopback; "" = 127.0.0.1
	pause time.Duration // wait this long first (a greylisting retry)
}

func tour(sign func(string) string) []example {
	clean := "From: Alice <alice@sender.test>\r\nTo: Bob <bob@demo.test>\r\nSubject: hello from the demo\r\n" +
		"Message-ID: <demo-1@sender.test>\r\n\r\nHi Bob,\r\n. a line that starts with a dot survives.\r\n"
	clean = sign(clean) // example 1 is DKIM-signed: SPF, DKIM and DMARC pass
	spoof := "From: The CEO <ceo@bank.test>\r\nTo: bob@demo.test\r\nSubject: urgent wire transfer\r\n" +
		"Message-ID: <spoof-1@bank.test>\r\n\r\nPlease pay the attached invoice today.\r\n"
	news := "From: News <news@newsletter.test>\r\nTo: bob@demo.test\r\nSubject: weekly news\r\n" +
		"Message-ID: <weekly-1@newsletter.test>\r\n\r\nThis week.\r\n"
	partner := "From: News <news@partner.test>\r\nTo: bob@demo.test\r\nSubject: partner newsletter\r\n" +
		"Message-ID: <news-1@partner.test>\r\n\r\nHello from the partner.\r\n"
	big := "Subject: a large attachment\r\n\r\n" + strings.Repeat(strings.Repeat("x", 76)+"\r\n", 4000)
	lottery := "From: Lucky <lucky@sender.test>\r\nSubject: You are a WINNER\r\n\r\nClaim your prize.\r\n"
	smuggle := "Subject: smuggling\r\n\r\nhello\n.\nMAIL FROM:<evil@smuggled.test>\r\nRCPT TO:<bob@demo.test>\r\nDATA\r\nSmuggled!\r\n"
	return []example{
		{"a clean message", []string{"MAIL FROM:<alice@sender.test>", "RCPT TO:<bob@demo.test>", "DATA:" + clean}, "", "", 0},
		{"a recipient outside our domains", []string{"MAIL FROM:<spammer@sender.test>", "RCPT TO:<victim@elsewhere.test>"}, "", "", 0},
		{"a %-hack relay attempt", []string{"MAIL FROM:<spammer@sender.test>", "RCPT TO:<victim%elsewhere.test@demo.test>"}, "", "", 0},
		{"a message over the size limit", []string{"MAIL FROM:<alice@sender.test>", "RCPT TO:<bob@demo.test>", "DATA:" + big}, "", "", 0},
		{"an SMTP smuggling attempt (\\n.\\n)", []string{"MAIL FROM:<alice@sender.test>", "RCPT TO:<bob@demo.test>", "DATA:" + smuggle}, "", "", 0},
		{"a recipient the backend refuses", []string{"MAIL FROM:<alice@sender.test>", "RCPT TO:<" + unknown + ">"}, "", "", 0},
		{"a sender a rule rejects (custom reply)", []string{"MAIL FROM:<bulk@spammer.test>", "RCPT TO:<bob@demo.test>"}, "", "", 0},
		{"a message a shadow rule would reject", []string{"MAIL FROM:<alice@sender.test>", "RCPT TO:<bob@demo.test>", "DATA:" + lottery}, "", "", 0},
		{"a client scoring over the tag threshold", []string{"MAIL FROM:<alice@sender.test>", "RCPT TO:<bob@demo.test>", "DATA:" + clean}, "localhost", "", 0},
		{"a client listed in the DNSBL (127.0.0.2)", []string{"MAIL FROM:<offer@dialup.test>", "RCPT TO:<bob@demo.test>"}, "dialup-2.isp.test", "127.0.0.2", 0},
		{"a clean client with confirmed rDNS (127.0.0.3)", []string{"MAIL FROM:<news@partner.test>", "RCPT TO:<bob@demo.test>", "DATA:" + partner}, "mail.partner.test", "127.0.0.3", 0},
		{"a spoofed sender from a p=reject domain", []string{"MAIL FROM:<ceo@bank.test>", "RCPT TO:<bob@demo.test>", "DATA:" + spoof}, "mail.bank.test", "127.0.0.4", 0},
		{"a greylisted first attempt", []string{"MAIL FROM:<news@newsletter.test>", "RCPT TO:<bob@demo.test>", "DATA:" + news}, "", "", 0},
		{"... its retry after the delay", []string{"MAIL FROM:<news@newsletter.test>", "RCPT TO:<bob@demo.test>", "DATA:" + news}, "", "", 1200 * time.Millisecond},
	}
}

var refRE = regexp.MustCompile(`\(ref ([0-9A-Z]{26})\)`)

// runTour sends each example and prints what the client saw and the
// verdict recorded for it.
func runTour(out io.Writer, addr string, t *tap, sign func(string) string) {
	fmt.Fprintf(out, "Tour: each example is a real SMTP transaction on loopback.\n\n")
	tw := tabwriter.NewWriter(out, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, " #\texample\tthe client saw\taction / reason")
	var first string
	for i, ex := range tour(sign) {
		time.Sleep(ex.pause)
		helo := ex.helo
		if helo == "" {
			helo = "client.sender.test"
		}
		last, err := send(addr, ex.from, helo, ex.steps)
		action, reason := "?", "?"
		if err != nil {
			last = "error: " + err.Error()
		} else if m := refRE.FindStringSubmatch(last); m != nil {
			if rec, ok := t.wait(m[1]); ok {
				action, reason = string(rec.Action), string(rec.Reason)
				for _, r := range rec.Rules {
					if r.Shadow {
						reason += " (shadow: " + r.Name + " would " + string(r.Action) + ")"
					}
				}
				if i == 0 {
					var buf bytes.Buffer
					enc := json.NewEncoder(&buf)
					enc.SetEscapeHTML(false)
					enc.SetIndent("  ", "  ")
					enc.Encode(rec)
					first = strings.TrimSpace(buf.String())
				}
			}
		}
		fmt.Fprintf(tw, " %d\t%s\t%s\t%s / %s\n", i+1, ex.title, shorten(refRE.ReplaceAllString(last, ""), 52), action, reason)
	}
	tw.Flush()
	fmt.Fprintf(out, "\nEvery 4xx/5xx text ends with \"(ref <id>)\"; the verdict record with that ref says why.\n")
	if first != "" {
		fmt.Fprintf(out, "\nThe verdict record of example 1:\n\n  %s\n\n", first)
	}
}

// send runs one transaction and returns the last reply the client got.
func send(addr, from, helo string, steps []string) (string, error) {
	c, r, err := dial(addr, from)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if _, err := reply(r); err != nil {
		return "", err
	}
	last := ""
	for _, s := range append([]string{"EHLO " + helo}, steps...) {
		body, isData := strings.CutPrefix(s, "DATA:")
		if isData {
			s = "DATA"
		}
		if last, err = command(c, r, s); err != nil {
			return "", err
		}
		if isData && strings.HasPrefix(last, "354") {
			if _, err := io.WriteString(c, dotStuff(body)+".\r\n"); err != nil {
				return "", err
			}
			if last, err = reply(r); err != nil {
				return "", err
			}
		}
		if last[0] != '2' && last[0] != '3' {
			break
		}
	}
	command(c, r, "QUIT")
	return last, nil
}

// dotStuff doubles a dot that starts a line, as every SMTP client must
// (RFC 5321 §4.5.2); the gateway removes it again.
func dotStuff(body string) string {
	if strings.HasPrefix(body, ".") {
		body = "." + body
	}
	return strings.ReplaceAll(body, "\r\n.", "\r\n..")
}

func command(c net.Conn, r *bufio.Reader, line string) (string, error) {
	if _, err := io.WriteString(c, line+"\r\n"); err != nil {
		return "", err
	}
	return reply(r)
}

// reply reads one (possibly multi-line) reply and returns its last line.
func reply(r *bufio.Reader) (string, error) {
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return "", err
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 4 || line[3] != '-' {
			return line, nil
		}
	}
}

func shorten(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
