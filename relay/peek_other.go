//go:build !unix

package relay

import "net"

// peekAlive is unavailable here; alive falls back to a short read deadline.
func peekAlive(net.Conn) (alive, ok bool) { return false, false }
