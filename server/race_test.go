//go:build race

package server

// The race detector is on: tests that need more than its 8128 live
// goroutines skip (see TestTenThousandSessions).
func init() { raceEnabled = true }
