package rawio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 13)
	}
	return b
}

// TestWritevAndRead: a writev larger than the socket buffers waits while
// they are full and sends every byte in order, consuming the buffers; the
// reader sees the stream, then io.EOF.
func TestWritevAndRead(t *testing.T) {
	a, b := tcpPair(t)
	_ = a.SetWriteBuffer(16 << 10) // force partial writes
	wa, err := Of(a)
	if err != nil {
		t.Fatal(err)
	}
	rb, _ := Of(b)
	parts := [][]byte{pattern(100), nil, pattern(3 << 20), []byte("\r\n--frame\r\n")}
	want := bytes.Join(parts, nil)
	got := make(chan []byte)
	go func() {
		var out []byte
		buf := make([]byte, 64<<10)
		for {
			n, err := rb.Read(buf)
			out = append(out, buf[:n]...)
			if err != nil {
				got <- out
				return
			}
		}
	}()
	v := net.Buffers(parts)
	n, err := wa.Writev(&v)
	if err != nil || n != int64(len(want)) || len(v) != 0 {
		t.Fatalf("Writev = %d, %v, %d buffers left; want %d, nil, 0", n, err, len(v), len(want))
	}
	a.CloseWrite()
	if out := <-got; !bytes.Equal(out, want) {
		t.Fatalf("read %d bytes, not the %d written", len(out), len(want))
	}
}

// TestTryWritev: TryWritev writes what the socket takes and returns when
// it is full, without an error and whatever the write deadline, leaving
// the rest in the buffers; Writev then finishes them and the reader gets
// every byte in order. On a closed connection it fails.
func TestTryWritev(t *testing.T) {
	a, b := tcpPair(t)
	_ = a.SetWriteBuffer(16 << 10)
	_ = b.SetReadBuffer(16 << 10)
	wa, _ := Of(a)
	rb, _ := Of(b)
	_ = a.SetWriteDeadline(time.Now().Add(-time.Second)) // past: Writev would fail at once

	small := net.Buffers{[]byte("head\r\n"), nil, pattern(1000), []byte("\r\n")}
	if n, done, err := wa.TryWritev(&small); n != 1008 || !done || err != nil || len(small) != 0 {
		t.Fatalf("TryWritev of 1,008 bytes = %d, %v, %v, %d buffers left; want all written", n, done, err, len(small))
	}
	parts := [][]byte{pattern(100), pattern(4 << 20), []byte("\r\n--frame\r\n")}
	want := append(append(append([]byte("head\r\n"), pattern(1000)...), "\r\n"...), bytes.Join(parts, nil)...)
	v := net.Buffers(slices.Clone(parts))
	n, done, err := wa.TryWritev(&v)
	left := 0
	for _, p := range v {
		left += len(p)
	}
	if done || err != nil || n == 0 || int(n)+left != len(want)-1008 {
		t.Fatalf("TryWritev of 4 MB to an unread socket = %d, %v, %v with %d left; want part of it written, no error", n, done, err, left)
	}

	got := make(chan []byte)
	go func() {
		var out []byte
		buf := make([]byte, 64<<10)
		for len(out) < len(want) {
			n, err := rb.Read(buf)
			out = append(out, buf[:n]...)
			if err != nil {
				break
			}
		}
		got <- out
	}()
	_ = a.SetWriteDeadline(time.Time{})
	if _, err := wa.Writev(&v); err != nil || len(v) != 0 {
		t.Fatalf("Writev of the rest: %v, %d buffers left", err, len(v))
	}
	if out := <-got; !bytes.Equal(out, want) {
		t.Fatalf("read %d bytes, not the %d written", len(out), len(want))
	}

	a.Close()
	v = net.Buffers{[]byte("late")}
	if _, done, err := wa.TryWritev(&v); done || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("TryWritev after Close = %v, %v; want net.ErrClosed", done, err)
	}
}

// TestDeadlinesAndClose: deadlines come from the poller as they do for
// the net package's own calls, and a closed connection says so.
func TestDeadlinesAndClose(t *testing.T) {
	a, b := tcpPair(t)
	rb, _ := Of(b)
	_ = b.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := rb.Read(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v", err)
	}
	_ = b.SetReadDeadline(time.Time{})

	// A peer that does not read: the write waits, then times out with
	// what it wrote so far accounted for. The deadline is set once the
	// first writev has filled the socket (bytes wait in its send queue),
	// so something was written however slow the machine.
	_ = a.SetWriteBuffer(16 << 10)
	_ = b.SetReadBuffer(16 << 10)
	wa, _ := Of(a)
	v := net.Buffers{pattern(8 << 20)}
	type result struct {
		n   int64
		err error
	}
	done := make(chan result)
	go func() {
		n, err := wa.Writev(&v)
		done <- result{n, err}
	}()
	for start := time.Now(); sendQueue(t, a) == 0; time.Sleep(time.Millisecond) {
		if time.Since(start) > 30*time.Second {
			t.Fatal("Writev wrote nothing in 30s")
		}
	}
	_ = a.SetWriteDeadline(time.Now())
	r := <-done
	if !errors.Is(r.err, os.ErrDeadlineExceeded) || r.n == 0 || r.n >= 8<<20 || int64(len(v[0]))+r.n != 8<<20 {
		t.Fatalf("Writev to a stalled peer = %d, %v (%d left)", r.n, r.err, len(v[0]))
	}

	b.Close()
	if _, err := rb.Read(make([]byte, 10)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after Close: %v", err)
	}
}

// TestSeqpacket: on a SEQPACKET socket a Write is one message and a Read
// returns one.
func TestSeqpacket(t *testing.T) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Skip(err)
	}
	conn := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "seqpacket")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(*net.UnixConn)
	}
	a, b := conn(fds[0]), conn(fds[1])
	wa, _ := Of(a)
	rb, _ := Of(b)
	msgs := []string{"H", "frame 1", "ack cam 7"}
	for _, m := range msgs {
		if _, err := wa.Write([]byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 64)
	for _, m := range msgs {
		n, err := rb.Read(buf)
		if err != nil || string(buf[:n]) != m {
			t.Fatalf("Read = %q, %v; want %q", buf[:n], err, m)
		}
	}
	a.Close()
	if _, err := rb.Read(buf); err != io.EOF {
		t.Fatalf("read after the peer closed: %v, want io.EOF", err)
	}
}

// sendQueue returns the bytes c's socket holds unsent (SIOCOUTQ).
func sendQueue(t *testing.T, c *net.TCPConn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int32
	var errno syscall.Errno
	_ = rc.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCOUTQ, uintptr(unsafe.Pointer(&n)))
	})
	if errno != 0 {
		t.Fatalf("SIOCOUTQ: %v", errno)
	}
	return int(n)
}

// TestTryReadNeverWaits: TryRead returns at once while a Read waits on
// the socket (a camera offering frames must not stall behind the goroutine
// waiting for a plugin's ack), and the waiting Read still gets the message.
func TestTryReadNeverWaits(t *testing.T) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Skip(err)
	}
	conn := func(fd int) *Conn {
		f := os.NewFile(uintptr(fd), "seqpacket")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		rc, err := Of(c.(*net.UnixConn))
		if err != nil {
			t.Fatal(err)
		}
		return rc
	}
	a, b := conn(fds[0]), conn(fds[1])
	buf := make([]byte, 64)
	if n, ok, err := b.TryRead(buf); n != 0 || ok || err != nil {
		t.Fatalf("TryRead on an empty socket = %d, %v, %v; want 0, false, nil", n, ok, err)
	}

	got := make(chan string, 1)
	go func() {
		rbuf := make([]byte, 64)
		n, err := b.Read(rbuf)
		if err != nil {
			got <- err.Error()
			return
		}
		got <- string(rbuf[:n])
	}()
	// The Read holds rmu while it waits.
	for deadline := time.Now().Add(10 * time.Second); b.rmu.TryLock(); {
		b.rmu.Unlock()
		if time.Now().After(deadline) {
			t.Fatal("the Read did not start in 10s")
		}
		time.Sleep(time.Millisecond)
	}
	tried := make(chan bool, 1)
	go func() {
		_, ok, _ := b.TryRead(make([]byte, 64))
		tried <- ok
	}()
	select {
	case ok := <-tried:
		if ok {
			t.Fatal("TryRead read a message from an empty socket")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("TryRead waited behind a waiting Read")
	}
	if _, err := a.Write([]byte("ack cam 7")); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m != "ack cam 7" {
			t.Fatalf("the waiting Read got %q, want %q", m, "ack cam 7")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting Read got nothing in 10s")
	}
}
