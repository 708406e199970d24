package e2e

import (
	"os/exec"
	"syscall"
)

// setProcAttr makes the kernel kill a child when the test process dies
// (a test timeout panics and exits without running cleanups).
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
