package device

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/camd/camd/internal/rawio"
)

// A frame reaches camd in many TCP segments (an ESP32 over Wi-Fi sends a
// 40 KB JPEG as dozens over tens of milliseconds), and by default every
// segment wakes the reading thread: on a small machine those wake-ups, not
// the bytes, are most of what a camera costs. While a frame of known length
// is being read, the socket's receive low-water mark (SO_RCVLOWAT) is kept
// at a lower bound of the bytes still to come, so the kernel wakes the
// reader once, when the rest of the frame is there. Reads still return what
// is available and a closed connection still wakes the reader; the mark
// drops with every byte read, so it never waits for bytes that will not
// come.

// transportBuffer is the HTTP transport's read buffer: bytes that may sit
// there, above the socket, and so must not be waited for.
const transportBuffer = 4 << 10

// minLowat is the smallest bound worth a system call.
const minLowat = 8 << 10

// lowat follows the newest plain TCP connection a client dialed (the
// clients here hold one connection at a time).
type lowat struct {
	conn atomic.Pointer[lowatConn]
}

// dialer wraps dial so that lowat knows the connection.
func (l *lowat) dialer(dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		tc, ok := c.(*net.TCPConn)
		if !ok {
			return c, nil
		}
		raw, err := tc.SyscallConn()
		if err != nil {
			return c, nil
		}
		lc := &lowatConn{Conn: c, raw: raw, rio: rawio.New(raw), mark: 1}
		l.conn.Store(lc)
		return lc, nil
	}
}

// expect says that at least n more bytes must arrive on the connection
// before the reader can finish what it reads now; 0 when it is done.
func (l *lowat) expect(n int) {
	if c := l.conn.Load(); c != nil {
		c.expect(n)
	}
}

// readAhead is how much a lowatConn reads from the socket at once. The
// HTTP transport above reads in 4 KB (which keeps the bytes it may hold,
// and so the mark, bounded) and a chunked body's reads stop at each
// chunk's end: through it alone a frame took four reads. Reading ahead,
// it takes one, plus the one that finds the socket empty.
const readAhead = 64 << 10

// lowatConn counts what is read to keep the mark below what is still due.
type lowatConn struct {
	net.Conn
	raw syscall.RawConn
	rio *rawio.Conn
	// got counts the bytes read from the socket, for arrived: with the
	// mark raised the reader sleeps while a frame's bytes come in.
	got atomic.Int64

	mu   sync.Mutex
	due  int // bytes still expected from the socket; 0: nothing
	mark int // SO_RCVLOWAT as last set
	// buf[r:w] was read from the socket and not yet by the caller.
	// Reads are the one reading goroutine's; mu is for expect.
	buf  []byte
	r, w int
}

func (c *lowatConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if c.r < c.w {
		n := copy(p, c.buf[c.r:c.w])
		c.r += n
		c.mu.Unlock()
		return n, nil
	}
	if c.buf == nil {
		c.buf = make([]byte, readAhead)
	}
	c.mu.Unlock()

	// Not under mu: expect may come while a read waits.
	direct := len(p) >= readAhead
	dst := c.buf
	if direct {
		dst = p
	}
	n, err := c.read(dst)
	if n > 0 {
		c.got.Add(int64(n))
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	if n > 0 && c.due > 0 {
		c.due = max(0, c.due-n)
		c.setLocked(c.due)
	}
	if direct || n == 0 {
		return n, err
	}
	c.r, c.w = copy(p, c.buf[:n]), n
	return c.r, nil
}

// expect: n counts bytes the reader holds nowhere, some of which may
// already sit in buf.
func (c *lowatConn) expect(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.due = max(0, n-(c.w-c.r))
	c.setLocked(c.due)
}

// arrived returns how many bytes have come in on the connection: those
// read and those waiting in the socket. It grows while a frame trickles in
// even when the mark keeps the reader asleep until the frame's end, so a
// watchdog can tell a slow frame from a silent device. It costs a system
// call: for a watchdog's rare looks, not per read.
func (c *lowatConn) arrived() int64 {
	n := c.got.Load()
	var queued int
	var qerr error
	if err := c.raw.Control(func(fd uintptr) { queued, qerr = socketQueued(fd) }); err == nil && qerr == nil {
		n += int64(queued)
	}
	return n
}

func (c *lowatConn) setLocked(n int) {
	if n < minLowat {
		n = 1
	}
	if n == c.mark {
		return
	}
	var serr error
	if err := c.raw.Control(func(fd uintptr) { serr = setRcvlowat(fd, n) }); err != nil || serr != nil {
		return // a closed connection: the read reports it
	}
	c.mark = n
}

// read reads with a raw system call (see rawio): on an idle daemon Go's
// ordinary read woke the runtime's monitor thread every frame, a futex
// wake-up and a few timer sleeps that were a good part of what a camera
// nobody watches costs.
func (c *lowatConn) read(p []byte) (int, error) {
	n, err := c.rio.Read(p)
	var se *os.SyscallError // deadlines and Close come as the net package's own errors
	if errors.As(err, &se) {
		err = &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
	}
	return n, err
}
