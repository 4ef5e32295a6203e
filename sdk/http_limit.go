package sdk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// clientAddr is what the per-client limits count as one client: an IPv4
// address, or an IPv6 /64, since one host can hold a whole /64. It is the
// TCP peer; behind a reverse proxy every viewer is the proxy, so raise
// max_viewers_per_client there.
type clientAddr struct{ p netip.Prefix }

// clientOf returns the client of a remote address ("192.0.2.1:5000").
// Addresses that are not IP (unix sockets) are all one client.
func clientOf(remote string) clientAddr {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return clientAddr{}
	}
	a := ap.Addr().Unmap().WithZone("")
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return clientAddr{p}
}

func (c clientAddr) String() string {
	switch {
	case !c.p.IsValid():
		return "a non-IP client"
	case c.p.Addr().Is4():
		return c.p.Addr().String()
	}
	return c.p.String()
}

// refusal says which cap refused an acquire.
type refusal int

const (
	admitted      refusal = iota
	refusedClient         // the key's own cap
	refusedAll            // the cap over all keys
)

// counts counts what each client holds (connections, viewer slots) and
// what all hold, against caps, and remembers the peak of the total.
type counts[K comparable] struct {
	mu      sync.Mutex
	perKey  map[K]int // no zero entries: a client that leaves costs nothing
	n, peak int
}

// acquire adds one for k unless k holds perKey already, or all hold
// total (0: no cap). It returns what k held before.
func (c *counts[K]) acquire(k K, perKey, total int) (int, refusal) {
	c.mu.Lock()
	defer c.mu.Unlock()
	held := c.perKey[k]
	if held >= perKey {
		return held, refusedClient
	}
	if total > 0 && c.n >= total {
		return held, refusedAll
	}
	if c.perKey == nil {
		c.perKey = map[K]int{}
	}
	c.perKey[k] = held + 1
	c.n++
	c.peak = max(c.peak, c.n)
	return held, admitted
}

// release gives back one of k's.
func (c *counts[K]) release(k K) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.perKey[k] <= 1 {
		delete(c.perKey, k)
	} else {
		c.perKey[k]--
	}
	c.n--
}

func (c *counts[K]) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// takePeak returns the total and its peak since the last takePeak that
// reset it (reset true), and then restarts the peak from the total.
func (c *counts[K]) takePeak(reset bool) (n, peak int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, peak = c.n, c.peak
	if reset {
		c.peak = c.n
	}
	return n, peak
}

// conns are the open connections and their caps.
type conns struct {
	counts[clientAddr]
	max, maxPerClient int
	reclaims          atomic.Uint64
}

func (c *conns) init(max, maxPerClient int) { c.max, c.maxPerClient = max, maxPerClient }

func (c *conns) open() int { return c.total() }

// limitListener refuses connections over the caps as soon as they are
// accepted, before net/http gives them a goroutine and buffers (about
// 13 KB each), and counts the ones it lets through until they close.
type limitListener struct {
	net.Listener
	h   *HTTP
	tls bool // connections speak TLS: a plain-text refusal would be garbage
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		h := l.h
		cs := &h.conns
		client := clientOf(c.RemoteAddr().String())
		_, refusal := cs.acquire(client, cs.maxPerClient, cs.max)
		if refusal == admitted {
			return &trackedConn{Conn: c, release: func() { cs.release(client) }}, nil
		}
		h.refused.conns.Add(1)
		code, msg := http.StatusTooManyRequests, fmt.Sprintf(
			"too many connections from %s (at most %d at once); close some and retry", client, cs.maxPerClient)
		if refusal == refusedAll {
			code, msg = http.StatusServiceUnavailable, "too many connections; retry later"
		}
		h.refused.note(h.Log, msg, client)
		if l.tls {
			_ = c.Close()
			continue
		}
		select {
		case h.refusers <- struct{}{}:
			h.wg.Add(1) // Serve's goroutine holds the group above zero meanwhile
			go func() {
				defer h.wg.Done()
				defer func() { <-h.refusers }()
				refuseConn(c, code, msg)
			}()
		default:
			_ = c.Close() // a flood: no answer
		}
	}
}

// Refusing a connection politely takes a goroutine for up to refuseWait;
// at most maxRefusers do so at once, and past that (a flood) connections
// are closed without an answer.
const (
	maxRefusers = 32
	refuseWait  = 500 * time.Millisecond
)

// refuseConn answers a connection it will not serve, once the client sent
// its request (an answer before it would be unsolicited to clients such
// as Go's), and closes it. A client that sends nothing gets nothing.
func refuseConn(c net.Conn, code int, msg string) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(refuseWait))
	var buf [4096]byte
	n, read := 0, 0
	for n < len(buf) {
		m, err := c.Read(buf[n:])
		n += m
		read += m
		if err != nil || bytes.Contains(buf[:n], []byte("\r\n\r\n")) {
			break
		}
	}
	if read == 0 {
		return
	}
	_, _ = c.Write(fmt.Appendf(nil,
		"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nRetry-After: %d\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s\n",
		code, http.StatusText(code), int(retryAfter/time.Second), len(msg)+1, msg))
}

// trackedConn gives its connection's place back when closed, however it is
// closed: by net/http, by a handler that hijacked it, by Shutdown.
type trackedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// CloseWrite keeps net/http's lingering close working through the wrapper.
func (c *trackedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// SyscallConn passes the connection's own on, so that a writer that
// needs its system calls (one writev of buffers shared by many viewers)
// still reaches them through the wrapper. A TLS connection has none, so
// TLS is never bypassed this way.
func (c *trackedConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errNoSyscallConn
}

var errNoSyscallConn = errors.New("the connection has no file descriptor")

// ReadFrom keeps sendfile working through the wrapper (http.ServeFile).
func (c *trackedConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// refusals counts refused connections and viewers, and says so in the log
// at most every refusalLogEvery, so a flood does not become a log flood.
type refusals struct {
	conns, viewers, client atomic.Uint64

	mu    sync.Mutex
	last  time.Time
	since int // refusals not logged yet
}

const refusalLogEvery = 10 * time.Second

func (r *refusals) note(log *slog.Logger, msg string, client clientAddr) {
	r.mu.Lock()
	r.since++
	if time.Since(r.last) < refusalLogEvery {
		r.mu.Unlock()
		return
	}
	n := r.since
	r.since, r.last = 0, time.Now()
	r.mu.Unlock()
	log.Warn("refusing clients: "+msg, "client", client.String(), "refused_since_last_warning", n)
}

// The reclaimer gives memory back to the system after a flood of
// connections: net/http's per-connection goroutines and buffers, and the
// garbage of connections refused at accept, are freed once the flood
// ends, but the Go runtime keeps the pages for reuse and returns them only
// slowly, so a plugin would stay at its flood-time size for minutes.
const (
	reclaimCheck      = time.Second      // how often it looks
	reclaimMinConns   = 256              // a flood let in: this many more connections at the peak than now
	reclaimMinRefused = 1000             // a flood kept out: this many connections refused
	reclaimGap        = 10 * time.Second // at most one forced collection this often
)

// reclaim runs until ctx ends. It collects garbage and returns the free
// pages (debug.FreeOSMemory) when a flood is over: open connections have
// fallen to half their peak or less, and by at least reclaimMinConns; or
// at least reclaimMinRefused connections were refused since the last
// time, and none in the last second.
func (h *HTTP) reclaim(ctx context.Context) {
	t := time.NewTicker(reclaimCheck)
	defer t.Stop()
	var (
		last        time.Time
		refusedBase uint64 // refusals counted up to the last reclaim
		refusedPrev uint64 // refusals a check ago
	)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, peak := h.conns.takePeak(false)
		refused := h.refused.conns.Load()
		letIn := peak-n >= reclaimMinConns && n <= peak/2
		keptOut := refused-refusedBase >= reclaimMinRefused && refused == refusedPrev
		refusedPrev = refused
		if !(letIn || keptOut) || time.Since(last) < reclaimGap {
			continue
		}
		h.conns.takePeak(true)
		refusedBase = refused
		start := time.Now()
		// net/http keeps closed connections' buffers in sync.Pools, which
		// survive one collection: the first frees them, the second (with
		// FreeOSMemory) returns the pages.
		runtime.GC()
		debug.FreeOSMemory()
		last = time.Now()
		h.conns.reclaims.Add(1)
		h.Log.Info("connection flood over: memory returned to the system",
			"peak_connections", peak, "open", n, "refused", refused,
			"took", last.Sub(start).Round(time.Millisecond))
	}
}
