package device

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestLowatMark: the mark follows what the reader expects, and small
// expectations are not worth one.
func TestLowatMark(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			defer c.Close()
			c.Write(make([]byte, 25000))
			time.Sleep(5 * time.Second)
		}
	}()
	var l lowat
	c, err := l.dialer((&net.Dialer{}).DialContext)(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mark := func() int {
		raw, err := c.(*lowatConn).Conn.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var v int
		var gerr error
		if err := raw.Control(func(fd uintptr) {
			v, gerr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT)
		}); err != nil || gerr != nil {
			t.Fatal(err, gerr)
		}
		return v
	}
	for _, tc := range []struct {
		expect, want int
	}{
		{30000, 30000},
		{minLowat - 1, 1}, // not worth it
		{minLowat, minLowat},
		{0, 1}, // done
	} {
		l.expect(tc.expect)
		if got := mark(); got != tc.want {
			t.Errorf("expect(%d): SO_RCVLOWAT = %d, want %d", tc.expect, got, tc.want)
		}
	}
	// Reading lowers the mark with what arrived: of 25,000 due, 20,000
	// read, 5,000 left is below the threshold.
	l.expect(25000)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, make([]byte, 20000)); err != nil {
		t.Fatal(err)
	}
	if got := mark(); got != 1 {
		t.Errorf("after reading 20000 of 25000: SO_RCVLOWAT = %d, want 1", got)
	}
}

// TestLowatRead: the raw read is a net.Conn's: bytes in order, the
// deadline as a timeout (os.ErrDeadlineExceeded), io.EOF at the peer's
// close, and an error after the connection is closed here.
func TestLowatRead(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	want := make([]byte, 100000)
	for i := range want {
		want[i] = byte(i * 7)
	}
	send := make(chan struct{})
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		<-send // after the deadline case
		c.Write(want)
	}()
	var l lowat
	c, err := l.dialer((&net.Dialer{}).DialContext)(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := c.Read(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v, want os.ErrDeadlineExceeded", err)
	}
	close(send)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c) // to the peer's close: io.EOF, which ReadAll drops
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes (%v), want the %d sent", len(got), err, len(want))
	}
	c.Close()
	if _, err := c.Read(make([]byte, 10)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after Close: %v, want net.ErrClosed", err)
	}
}

// TestMJPEGTrickle: frames that arrive in small segments over time (a
// camera on Wi-Fi) come out whole and in order with the mark raised, and
// the last frame before a pause is not held back waiting for more bytes.
func TestMJPEGTrickle(t *testing.T) {
	jpeg, err := os.ReadFile("testdata/frame-160x120.jpg")
	if err != nil {
		t.Fatal(err)
	}
	// Pad the frames past the mark's threshold, as a 640x480 frame is.
	big := append(bytes.Clone(jpeg[:len(jpeg)-2]), make([]byte, 40<<10)...)
	big = append(big, 0xFF, 0xD9)
	const frames = 5
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "multipart/x-mixed-replace;boundary=f")
		rc := http.NewResponseController(w)
		for i := range frames {
			part := fmt.Appendf(nil, "--f\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n", len(big))
			part = append(append(part, big...), "\r\n"...)
			for off := 0; off < len(part); off += 1460 {
				w.Write(part[off:min(off+1460, len(part))])
				rc.Flush()
				time.Sleep(100 * time.Microsecond)
			}
			if i == frames-1 {
				// Hold the stream open: the last frame must still
				// arrive before anything more does.
				<-r.Context().Done()
			}
		}
	}))
	defer srv.Close()

	m := NewMJPEG(srv.URL)
	if m.lowat == nil {
		t.Fatal("an http source has no low-water mark")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := 0
	err = m.Stream(ctx, func(f RawFrame) bool {
		if !bytes.Equal(f.JPEG, big) {
			t.Errorf("frame %d: %d bytes differ from the %d sent", got, len(f.JPEG), len(big))
		}
		if got++; got == frames {
			cancel()
		}
		return false // the next frame may reuse the bytes
	})
	if got != frames {
		t.Fatalf("got %d frames, want %d (err %v)", got, frames, err)
	}
}

// TestLowatArrived: arrived counts the bytes that came in on the
// connection, read or still waiting in the socket, which is how the
// stream watchdog sees a frame arrive while the mark keeps its reader
// asleep.
func TestLowatArrived(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	send := make(chan int)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		for n := range send {
			c.Write(make([]byte, n))
		}
	}()
	defer close(send)
	var l lowat
	c, err := l.dialer((&net.Dialer{}).DialContext)(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	lc := c.(*lowatConn)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for _, step := range []struct {
		send, read int
		want       int64
	}{
		{send: 25000, want: 25000},             // waiting in the socket
		{read: 20000, want: 25000},             // read: still arrived
		{send: 5000, want: 30000},              // more while 5,000 wait
		{read: 10000, want: 30000},             // all read
		{send: 0, read: 0, want: 30000},        // nothing new
		{send: 1000, read: 1000, want: 31000},  // read as it comes
		{send: 64 << 10, want: 31000 + 64<<10}, // a frame's worth
	} {
		if step.send > 0 {
			send <- step.send
		}
		if step.read > 0 {
			if _, err := io.ReadFull(c, make([]byte, step.read)); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, 10*time.Second, fmt.Sprintf("%d bytes arrived", step.want), func() bool { return lc.arrived() == step.want })
	}
}

// BenchmarkTouchReader is what the stream watchdog costs a read: a clock
// read and an atomic store.
func BenchmarkTouchReader(b *testing.B) {
	wd := newWatchdog(time.Second)
	buf := make([]byte, 4<<10)
	src := bytes.NewReader(make([]byte, 4<<10))
	for _, tc := range []struct {
		name string
		r    io.Reader
	}{
		{"plain", src},
		{"touch", touchReader{src, wd}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				src.Seek(0, io.SeekStart)
				tc.r.Read(buf)
			}
		})
	}
}
