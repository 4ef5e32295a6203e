package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// viewers is a crowd of MJPEG clients on one URL. While recording, each
// notes every frame's latency: from the source's stamp to the frame's last
// byte here.
//
// They share the machine's cores with the relay they measure, so they are
// as cheap as a client can be, like wrk's: plain non-blocking sockets
// outside Go's poller, served by one epoll loop per core, each readiness
// one read into the loop's buffer, parsed as it comes (streamParser)
// without copying the frame. The net/http clients they replace took twice
// the relay's CPU at 500 viewers (29 µs per frame each, against 14 for
// camd), and their wait for a core became most of the relay's measured
// latency.
type viewers struct {
	host, request string
	recording     atomic.Bool
	wg            sync.WaitGroup // the loops

	mu     sync.Mutex
	loops  []*loop // started by the first add
	each   []*viewer
	errors []error
}

type viewer struct {
	first atomic.Bool // got a frame

	mu      sync.Mutex // uncontended: the viewer's loop and the reports
	frames  int        // recorded frames
	latency []int32    // recorded latencies, µs
	bad     int        // recorded frames without a stamp
}

func newViewers(rawURL string) (*viewers, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	return &viewers{host: u.Host, request: fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", u.RequestURI(), u.Host)}, nil
}

// add starts n more viewers; they run until ctx ends.
func (vs *viewers) add(ctx context.Context, n int) error {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	if vs.loops == nil {
		for range runtime.NumCPU() {
			l, err := newLoop(vs)
			if err != nil {
				return err
			}
			vs.loops = append(vs.loops, l)
			vs.wg.Add(1)
			go func() {
				defer vs.wg.Done()
				l.run(ctx)
			}()
		}
	}
	for range n {
		v := &viewer{}
		if err := vs.loops[len(vs.each)%len(vs.loops)].connect(vs.host, vs.request, v); err != nil {
			return err
		}
		vs.each = append(vs.each, v)
	}
	return nil
}

// fail records a viewer's error.
func (vs *viewers) fail(err error) {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	vs.errors = append(vs.errors, err)
}

// frame records a frame that v received whole at now.
func (vs *viewers) frame(v *viewer, start []byte, now int64) {
	v.first.Store(true)
	if !vs.recording.Load() {
		return
	}
	stamp, ok := stampOf(start)
	v.mu.Lock()
	if ok {
		v.frames++
		v.latency = append(v.latency, int32((now-stamp)/1e3))
	} else {
		v.bad++
	}
	v.mu.Unlock()
}

// loop serves its viewers' sockets with one epoll set: level-triggered, so
// a read that did not drain a socket is simply told again.
type loop struct {
	vs   *viewers
	epfd int

	mu    sync.Mutex
	conns map[int32]*conn // by descriptor
}

type conn struct {
	fd int
	p  *streamParser
	at int64 // the time of the read being parsed, for frame
}

func newLoop(vs *viewers) (*loop, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll: %w", err)
	}
	return &loop{vs: vs, epfd: epfd, conns: map[int32]*conn{}}, nil
}

// connect opens a viewer's connection, sends its request and adds it to
// the loop.
func (l *loop) connect(host, request string, v *viewer) error {
	addr, err := net.ResolveTCPAddr("tcp", host)
	if err != nil {
		return err
	}
	ip4 := addr.IP.To4()
	if ip4 == nil {
		return fmt.Errorf("%s: the viewers speak IPv4 only", host)
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	sa := &syscall.SockaddrInet4{Port: addr.Port}
	copy(sa.Addr[:], ip4)
	// Connect and send the request blocking: both are over at once on
	// loopback. Then the socket is non-blocking for the loop.
	if err := syscall.Connect(fd, sa); err != nil {
		syscall.Close(fd)
		return fmt.Errorf("connect %s: %w", host, err)
	}
	if _, err := syscall.Write(fd, []byte(request)); err != nil {
		syscall.Close(fd)
		return fmt.Errorf("request: %w", err)
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return err
	}
	c := &conn{fd: fd}
	c.p = newStreamParser(func(start []byte) { l.vs.frame(v, start, c.at) })
	l.mu.Lock()
	if l.conns == nil { // the loop has ended
		l.mu.Unlock()
		syscall.Close(fd)
		return errors.New("the viewers have stopped")
	}
	l.conns[int32(fd)] = c
	l.mu.Unlock()
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)}
	if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		l.drop(c)
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	return nil
}

// run reads and parses whatever arrives until ctx ends, then closes the
// loop's sockets.
func (l *loop) run(ctx context.Context) {
	defer l.close()
	events := make([]syscall.EpollEvent, 256)
	buf := make([]byte, 256<<10)
	for ctx.Err() == nil {
		n, err := syscall.EpollWait(l.epfd, events, 100)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			l.vs.fail(fmt.Errorf("epoll_wait: %w", err))
			return
		}
		for _, ev := range events[:n] {
			l.mu.Lock()
			c := l.conns[ev.Fd]
			l.mu.Unlock()
			if c == nil {
				continue
			}
			r, err := syscall.Read(c.fd, buf)
			switch {
			case errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR):
				continue
			case err != nil:
			case r == 0:
				err = errStreamEnded
			default:
				c.at = time.Now().UnixNano()
				err = c.p.feed(buf[:r])
			}
			if err != nil {
				if ctx.Err() == nil {
					l.vs.fail(fmt.Errorf("viewer: %w", err))
				}
				l.drop(c)
			}
		}
	}
}

func (l *loop) drop(c *conn) {
	l.mu.Lock()
	delete(l.conns, int32(c.fd))
	l.mu.Unlock()
	syscall.Close(c.fd) // leaves the epoll set too
}

func (l *loop) close() {
	l.mu.Lock()
	for fd := range l.conns {
		syscall.Close(int(fd))
	}
	l.conns = nil
	l.mu.Unlock()
	syscall.Close(l.epfd)
}

// ready waits until every viewer has had a frame.
func (vs *viewers) ready(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		vs.mu.Lock()
		waiting, errs := 0, vs.errors
		for _, v := range vs.each {
			if !v.first.Load() {
				waiting++
			}
		}
		vs.mu.Unlock()
		if len(errs) > 0 {
			return fmt.Errorf("%d viewers failed, first: %w", len(errs), errs[0])
		}
		if waiting == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d viewers had no frame after %s", waiting, len(vs.each), timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// record starts or stops recording; a start clears what was recorded.
func (vs *viewers) record(on bool) {
	if on {
		vs.mu.Lock()
		for _, v := range vs.each {
			v.mu.Lock()
			v.frames, v.latency, v.bad = 0, v.latency[:0], 0
			v.mu.Unlock()
		}
		vs.mu.Unlock()
	}
	vs.recording.Store(on)
}

// result is what the viewers recorded.
type result struct {
	viewers   int
	frames    int     // delivered, in total
	minFrames int     // of the slowest viewer
	bad       int     // frames without the stamp
	latency   []int32 // µs, sorted
}

func (vs *viewers) result() result {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	r := result{viewers: len(vs.each), minFrames: -1}
	for _, v := range vs.each {
		v.mu.Lock()
		r.frames += v.frames
		r.bad += v.bad
		if r.minFrames < 0 || v.frames < r.minFrames {
			r.minFrames = v.frames
		}
		r.latency = append(r.latency, v.latency...)
		v.mu.Unlock()
	}
	slices.Sort(r.latency)
	return r
}

// percentile returns the p-th percentile of the latencies, in ms.
func (r result) percentile(p float64) float64 {
	if len(r.latency) == 0 {
		return 0
	}
	i := min(int(p/100*float64(len(r.latency))), len(r.latency)-1)
	return float64(r.latency[i]) / 1e3
}
