// Package rawio reads and writes non-blocking sockets with raw system
// calls.
//
// Go's ordinary socket calls go through the scheduler (entersyscall): on
// the way in the runtime wakes its monitor thread if that sleeps, which
// on a daemon idle between frames it does before every frame, and the
// monitor hands the processor of a call lasting over 20 µs to another
// thread. A non-blocking socket's read or write never blocks, so neither
// is of use there; on a small machine, where a frame's work is a few
// system calls, those wake-ups and hand-offs were much of what the frame
// cost. Waiting until the socket is ready, and deadlines, stay the
// poller's (syscall.RawConn).
package rawio

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// maxIov is how many buffers one writev(2) call takes here.
const maxIov = 8

// Conn reads and writes one socket. Reads may run beside writes; reads
// (and writes) are serialised with each other. The functions handed to
// the poller are made once, with the calls' arguments in the Conn; the
// caller's buffers escape to the heap, as they do for the net package.
type Conn struct {
	rc syscall.RawConn

	rmu   sync.Mutex
	rbuf  []byte
	rn    int
	rerr  syscall.Errno
	rwait bool // read waits for data; else one attempt
	readf func(fd uintptr) bool

	wmu       sync.Mutex
	iov       [maxIov]syscall.Iovec
	niov      int
	wn        int
	werr      syscall.Errno
	writef    func(fd uintptr) bool
	tryWritef func(fd uintptr)
}

// New returns a Conn on the socket behind rc, which must be non-blocking
// (every socket of the net package is).
func New(rc syscall.RawConn) *Conn {
	c := &Conn{rc: rc}
	c.readf = c.read
	c.writef = c.writev
	c.tryWritef = c.writevOnce
	return c
}

// Of returns a Conn on a net package connection (*net.TCPConn,
// *net.UnixConn, …).
func Of(conn syscall.Conn) (*Conn, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	return New(rc), nil
}

func (c *Conn) read(fd uintptr) bool {
	r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&c.rbuf[0])), uintptr(len(c.rbuf)))
	if e == syscall.EAGAIN && c.rwait {
		return false // wait until readable
	}
	c.rn, c.rerr = int(r), e
	return true
}

func (c *Conn) writev(fd uintptr) bool {
	c.writevOnce(fd)
	return c.werr != syscall.EAGAIN // else wait until writable
}

// writevOnce is writev for Control: one attempt, EAGAIN included.
func (c *Conn) writevOnce(fd uintptr) {
	r, _, e := syscall.RawSyscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&c.iov[0])), uintptr(c.niov))
	c.wn, c.werr = int(r), e
}

// Read reads into p, waiting until the socket is readable. It returns
// io.EOF at the end of a stream. On a SEQPACKET socket it reads one
// message.
func (c *Conn) Read(p []byte) (int, error) {
	n, _, err := c.read1(p, true)
	return n, err
}

// TryRead is Read without waiting: ok is false when nothing is there,
// and also while a Read waits on the socket: that Read gets what comes,
// and TryRead must not wait behind it (a camera offering a frame would
// stall until a hung peer answers).
func (c *Conn) TryRead(p []byte) (n int, ok bool, err error) {
	return c.read1(p, false)
}

func (c *Conn) read1(p []byte, wait bool) (int, bool, error) {
	if len(p) == 0 {
		return 0, true, nil
	}
	if wait {
		c.rmu.Lock()
	} else if !c.rmu.TryLock() {
		return 0, false, nil
	}
	defer c.rmu.Unlock()
	c.rbuf, c.rwait = p, wait
	defer func() { c.rbuf = nil }()
	for {
		if err := c.rc.Read(c.readf); err != nil {
			return 0, false, err // closed, or past the deadline
		}
		switch {
		case c.rerr == syscall.EINTR:
			continue
		case c.rerr == syscall.EAGAIN: // not waiting
			return 0, false, nil
		case c.rerr != 0:
			return 0, false, os.NewSyscallError("read", c.rerr)
		case c.rn == 0:
			return 0, false, io.EOF
		}
		return c.rn, true, nil
	}
}

// Write writes p, waiting while the socket is full, until all of it is
// written or an error. A SEQPACKET or datagram socket takes p whole, as
// one message.
func (c *Conn) Write(p []byte) (int, error) {
	v := net.Buffers{p}
	n, err := c.Writev(&v)
	return int(n), err
}

// Writev writes the buffers with writev(2), waiting while the socket is
// full, until all are written or an error. Like net.Buffers.WriteTo it
// consumes v: after an error v holds what was not written.
func (c *Conn) Writev(v *net.Buffers) (int64, error) {
	n, _, err := c.writeAll(v, true)
	return n, err
}

// TryWritev writes what of the buffers the socket takes now, with one
// writev(2) per maxIov buffers and without waiting: done is true when all
// were written. Like Writev it consumes v. It goes around the poller
// (syscall.RawConn.Control), so a write deadline set for Writev does not
// apply and a full socket is no error, only done false: for a caller that
// writes to many sockets and leaves the rest of a slow one to Writev.
func (c *Conn) TryWritev(v *net.Buffers) (n int64, done bool, err error) {
	return c.writeAll(v, false)
}

// writeAll writes v, one writev(2) per maxIov buffers. With wait it waits
// through the poller while the socket is full (EAGAIN never reaches it);
// without, it stops there, done false.
func (c *Conn) writeAll(v *net.Buffers, wait bool) (n int64, done bool, err error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	defer clear(c.iov[:]) // hold no buffer past the call
	for {
		if !c.load(v) {
			return n, true, nil
		}
		if wait {
			err = c.rc.Write(c.writef)
		} else {
			err = c.rc.Control(c.tryWritef)
		}
		if err != nil {
			return n, false, err // closed, or the deadline passed
		}
		switch c.werr {
		case 0:
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return n, false, nil
		default:
			return n, false, os.NewSyscallError("writev", c.werr)
		}
		n += int64(c.wn)
		consume(v, c.wn)
	}
}

// load points the iovecs at v's first maxIov non-empty buffers; false
// when there are none (v is then emptied).
func (c *Conn) load(v *net.Buffers) bool {
	c.niov = 0
	for _, b := range *v {
		if c.niov == maxIov {
			break
		}
		if len(b) > 0 {
			c.iov[c.niov].Base = &b[0]
			c.iov[c.niov].SetLen(len(b))
			c.niov++
		}
	}
	if c.niov == 0 {
		*v = (*v)[len(*v):]
		return false
	}
	return true
}

// consume drops n written bytes from the front of v.
func consume(v *net.Buffers, n int) {
	for len(*v) > 0 {
		b := (*v)[0]
		if n < len(b) {
			(*v)[0] = b[n:]
			return
		}
		n -= len(b)
		*v = (*v)[1:]
	}
}
