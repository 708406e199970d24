// Package e2e tests the real gateway binary end to end, against real
// third-party mail programs: Postfix's smtp-sink as the backend and swaks
// (or the test itself) as the client. Everything listens on 127.0.0.1 only.
//
// The programs come from Debian packages (postfix, swaks); without them the
// tests skip, except in CI (CI=true) where they fail.
package e2e

import (
	"os"
	"testing"

	"github.com/mxgate/mxgate/internal/testutil"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.RemoveBuilds()
	os.Exit(code)
}
