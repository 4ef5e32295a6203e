package sdktest

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// Flood is a crowd of half-open connections: each sends the start of a
// request and then nothing, as a slowloris attack or a crowd of stalled
// clients does.
type Flood struct {
	mu    sync.Mutex
	conns []net.Conn
}

// NewFlood opens n connections to addr from the local address from (a
// loopback address such as "127.0.0.1"; several of them make several
// clients), each sending "GET / HTTP/1.1" and one header and then nothing.
// It returns when all are open and fails the test if one cannot be dialed.
// The connections stay open until Close or the end of the test; a server
// may close them sooner.
func NewFlood(t testing.TB, addr, from string, n int) *Flood {
	t.Helper()
	d := &net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	f := &Flood{conns: make([]net.Conn, 0, n)}
	t.Cleanup(f.Close)
	for i := 0; i < n; i++ {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("flood: connection %d of %d: %v", i+1, n, err)
		}
		f.mu.Lock()
		f.conns = append(f.conns, c)
		f.mu.Unlock()
		// A server that refused the connection may have closed it already.
		_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: flood\r\n")
	}
	return f
}

// Open returns how many of the connections the server holds open, as far
// as a client can tell right now: a connection the server answered or
// closed is not open.
func (f *Flood) Open() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	open := 0
	var b [1]byte
	for _, c := range f.conns {
		_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
		_, err := c.Read(b[:])
		if errors.Is(err, os.ErrDeadlineExceeded) {
			open++
		}
	}
	return open
}

// Close closes every connection. It may be called more than once.
func (f *Flood) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.conns {
		_ = c.Close()
	}
	f.conns = nil
}
