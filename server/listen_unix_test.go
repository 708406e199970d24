//go:build unix

package server

import (
	"net"
	"syscall"
	"testing"

	"github.com/mxgate/mxgate/internal/config"
)

// TestListenNoKeepAlive: client connections come without TCP keep-alive
// (see listenConfig).
func TestListenNoKeepAlive(t *testing.T) {
	ln, err := listen(config.Listener{Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	raw, err := sc.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var on int
	var serr error
	if err := raw.Control(func(fd uintptr) {
		on, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE)
	}); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
	if on != 0 {
		t.Errorf("SO_KEEPALIVE = %d on an accepted connection, want 0", on)
	}
}
