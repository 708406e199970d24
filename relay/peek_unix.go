//go:build unix

package relay

import (
	"net"
	"syscall"
)

// peekAlive looks at the socket's receive queue without consuming it or
// blocking (Go's sockets are non-blocking). ok is false when raw exposes no
// descriptor.
func peekAlive(raw net.Conn) (alive, ok bool) {
	sc, isSC := raw.(syscall.Conn)
	if !isSC {
		return false, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false, false
	}
	var perr error
	if err := rc.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, perr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK)
		// true: never wait for readiness, only look.
		return true
	}); err != nil {
		return false, true
	}
	if perr == syscall.EAGAIN || perr == syscall.EWOULDBLOCK || perr == syscall.EINTR {
		return true, true // nothing pending
	}
	// A byte pending (unsolicited data), EOF (no error, nothing read) or
	// another error (ECONNRESET): gone.
	return false, true
}
