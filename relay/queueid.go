package relay

import "regexp"

// queueIDPatterns find the backend's queue id in its reply to the final dot,
// most specific first, so a verdict record can be matched with the
// backend's own log. The first submatch is the id.
var queueIDPatterns = []*regexp.Regexp{
	// Postfix and mxgate's own sink: "2.0.0 Ok: queued as 4Xk9sT0bq1z3"
	// (Postfix's smtp-sink answers a bare "2.0.0 Ok": no id to record)
	regexp.MustCompile(`queued as ([A-Za-z0-9]+)`),
	// Exim: "OK id=1vQ2rS-000ABC-Xy"
	regexp.MustCompile(`id=([A-Za-z0-9-]+)`),
	// Sendmail: "2.0.0 5AMBc8Ye012345 Message accepted for delivery"
	regexp.MustCompile(`([A-Za-z0-9]{8,}) Message accepted for delivery`),
	// Others: "queued 1234.5678", "queued with id abc-1", "Queued as x.y"
	regexp.MustCompile(`(?i)queued (?:as |with id )?([A-Za-z0-9._-]+)`),
}

// QueueID returns the queue id a backend named in its final reply text, or
// "" when none of the known forms is found.
func QueueID(text string) string {
	for _, re := range queueIDPatterns {
		if m := re.FindStringSubmatch(text); m != nil {
			return m[1]
		}
	}
	return ""
}
