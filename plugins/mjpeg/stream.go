package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/camd/camd/internal/rawio"
)

// crlfBoundary ends every part: the next boundary goes right after the
// frame, so browsers show the frame at once instead of when the next one
// starts. Its tail (without the CRLF) opens the stream.
var crlfBoundary = []byte("\r\n--" + Boundary + "\r\n")

// serveStream serves GET /cameras/{camera}/stream.mjpg. Once the SDK has
// let the viewer in (auth, CORS) and Acquire has given it a slot, the
// connection is taken over from net/http: the response head is written
// here and each part goes out as one writev of buffers shared by every
// viewer (see viewer). net/http's own writes would cost several system
// calls and copies per part (chunked encoding, a bufio.Writer), and its
// per-connection buffers and goroutine would stay for the whole stream.
// A request that cannot be taken over (HTTP/2) is streamed through the
// ResponseWriter instead.
func (m *MJPEG) serveStream(w http.ResponseWriter, r *http.Request) {
	camera := r.PathValue("camera")
	fd, ok := m.feed(camera)
	if !ok {
		http.Error(w, "no such camera", http.StatusNotFound)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "multipart/x-mixed-replace; boundary="+Boundary)
	h.Set("Cache-Control", "no-store, no-cache, must-revalidate, max-age=0")
	h.Set("Pragma", "no-cache")
	h.Set("Connection", "close")
	h.Set("X-Accel-Buffering", "no") // tell nginx not to buffer
	if r.Method == http.MethodHead {
		// The headers a GET would get, without taking a viewer slot or
		// waking an on-demand camera.
		w.WriteHeader(http.StatusOK)
		return
	}
	release, ok := m.http.Acquire(w, r)
	if !ok {
		return
	}
	fd.viewers.Add(1)
	leave := func() {
		fd.viewers.Add(-1)
		release()
	}
	v := &viewer{m: m, fd: fd, camera: camera, remote: r.RemoteAddr, minGap: minGap(r)}

	// net/http writes the head of a response it still owns; after the
	// takeover it is ours to write, with the headers set so far (ours and
	// the SDK's: nosniff, CORS).
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	var head bytes.Buffer
	head.WriteString("HTTP/1.1 200 OK\r\n")
	_ = h.Write(&head)
	head.WriteString("\r\n")
	head.Write(crlfBoundary[2:])

	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		defer leave()
		v.serveResponse(w, r)
		return
	}
	// The handler returns now, and net/http's buffers, request and
	// goroutine for this connection with it; the viewer keeps only its
	// connection and goroutines.
	if !m.streams.Go(func(ctx context.Context) {
		defer leave()
		v.serveConn(ctx, conn, head.Bytes())
	}) {
		conn.Close() // stopping
		leave()
	}
}

// minGap is the least time between frames that ?fps=N asks for (e.g. a
// dashboard thumbnail), 0 for every frame.
func minGap(r *http.Request) time.Duration {
	if v, err := strconv.ParseFloat(r.URL.Query().Get("fps"), 64); err == nil && v > 0 {
		return time.Duration(float64(time.Second) / v)
	}
	return 0
}

// viewer is one viewer's stream of a camera.
type viewer struct {
	m      *MJPEG
	fd     *feed
	camera string
	remote string
	minGap time.Duration

	wake chan struct{} // a part was published, or the stream ends
	// direct is the connection the fan-out may write to itself; nil
	// when only the viewer's goroutine writes (TLS, HTTP/2, ?fps=).
	direct *connWriter
	// state says who writes to the connection now (see fanout); the
	// fields below belong to that writer.
	state      atomic.Int32
	last       *part // the part sent last, or being sent
	handoffErr error // why the fan-out could not write, on a hand-over
}

// serveConn streams to a connection taken over from net/http until ctx
// ends (Stop), the camera is removed from the output, the viewer hangs up
// or a write fails; the connection is closed then.
func (v *viewer) serveConn(ctx context.Context, conn net.Conn, head []byte) {
	ctx, cancel := context.WithCancel(ctx)
	defer context.AfterFunc(v.fd.removed, cancel)()
	// Closing the connection ends a write in progress at once, and the
	// hangup reader.
	context.AfterFunc(ctx, func() { conn.Close() })
	hungUp := make(chan struct{})
	go func() {
		defer close(hungUp)
		defer cancel()
		awaitHangup(conn)
	}()
	defer func() {
		cancel()
		conn.Close()
		<-hungUp
	}()

	out := newConnWriter(conn)
	_ = conn.SetWriteDeadline(time.Now().Add(time.Duration(v.m.cfg.WriteTimeout)))
	if _, err := conn.Write(head); err != nil {
		v.m.dropped(err, v.remote, v.camera)
		return
	}
	v.stream(ctx, out)
}

// maxChatter is how much a viewer may send after its request (it should
// send nothing) before it is disconnected.
const maxChatter = 64 << 10

// awaitHangup reads from conn until the viewer closes it or the
// connection fails or is closed: how a viewer that leaves between frames
// is noticed, as net/http notices it for the requests it still owns.
// Anything the viewer sends is dropped, up to maxChatter.
func awaitHangup(conn net.Conn) {
	buf := make([]byte, 64)
	for n := 0; n < maxChatter; {
		m, err := conn.Read(buf)
		if err != nil {
			return
		}
		n += m
	}
}

// serveResponse streams through net/http, for requests whose connection
// cannot be taken over, until the request ends (the viewer leaves, or the
// SDK's server shuts down), the camera is removed or a write fails.
func (v *viewer) serveResponse(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(v.fd.removed, cancel)()
	w.WriteHeader(http.StatusOK)
	out := &responseWriter{w: w, rc: http.NewResponseController(w)}
	_ = out.rc.SetWriteDeadline(time.Now().Add(time.Duration(v.m.cfg.WriteTimeout)))
	if _, err := w.Write(crlfBoundary[2:]); err != nil {
		return
	}
	if err := out.rc.Flush(); err != nil {
		return
	}
	v.stream(ctx, out)
}

// partWriter writes one part: its header, the frame and the next boundary.
type partWriter interface {
	// writePart writes p, or fails once deadline passes.
	writePart(p *part, deadline time.Time) error
}

// stream sends the feed's newest frame whenever the viewer is ready for
// one, until ctx ends or a write fails: a slow viewer skips frames, never
// holds up the others, and has at most the frame it is writing in flight.
// Where it can, the fan-out writes the parts (see fanout); this goroutine
// writes those it cannot, and the rest of a part the socket did not take
// at once.
func (v *viewer) stream(ctx context.Context, out partWriter) {
	timeout := time.Duration(v.m.cfg.WriteTimeout)
	v.wake = make(chan struct{}, 1)
	if cw, ok := out.(*connWriter); ok && cw.rio != nil && v.minGap == 0 {
		v.direct = cw
	}
	v.fd.fanout.add(v)
	defer v.leave()
	defer context.AfterFunc(ctx, func() { wakeUp(v.wake) })()
	var gap *time.Timer // for minGap
	for ctx.Err() == nil {
		switch {
		case v.state.Load() == handedOver:
			// The fan-out began a part the socket did not take whole.
			v.state.Store(streaming)
			err := v.handoffErr
			if err == nil {
				err = v.direct.finish(time.Now().Add(timeout))
			}
			v.last.drop() // the part handed over, held by the fan-out for us
			if err != nil {
				v.m.dropped(err, v.remote, v.camera)
				return
			}
			v.fd.sent.Add(1)
		case !v.state.CompareAndSwap(idle, streaming):
			<-v.wake // the fan-out writes; it wakes us if it needs us
			continue
		}
		// Wait for a part newer than the last one sent. The first must be
		// fresh: an old one is left over from before nobody watched (camd
		// sends no frames then), and the viewer waits for the next, which
		// its arrival asked for.
		p := v.fd.latest.Load()
		if p == nil || p == v.last || (v.last == nil && time.Since(p.arrived) > staleFirst) {
			// A part published from here on finds the viewer idle and
			// is written by the fan-out, or finds it streaming and
			// leaves a wake-up.
			v.state.Store(idle)
			<-v.wake
			continue
		}
		if !p.hold() { // replaced and released since: look again
			v.state.Store(idle)
			continue
		}
		v.next(p)
		start := time.Now()
		// The deadline covers the whole part: a viewer that stops reading
		// is dropped after write_timeout instead of pinning a goroutine.
		err := out.writePart(p, start.Add(timeout))
		p.drop()
		v.state.Store(idle)
		if err != nil {
			v.m.dropped(err, v.remote, v.camera)
			return
		}
		v.fd.sent.Add(1)
		if v.minGap == 0 {
			continue
		}
		if wait := v.minGap - time.Since(start); wait > 0 {
			if gap == nil {
				gap = time.NewTimer(wait)
			} else {
				gap.Reset(wait)
			}
			select {
			case <-ctx.Done():
				gap.Stop()
				return
			case <-gap.C:
			}
		}
	}
}

// leave takes the viewer off its feed's fan-out, and drops the part the
// fan-out handed over if the viewer left before taking it up: the hold
// taken for the viewer would otherwise never be given back, and the frame
// would go to the garbage collector instead of back to the SDK's buffers.
// Once off the fan-out, nothing hands the viewer a part any more.
func (v *viewer) leave() {
	v.fd.fanout.remove(v)
	if v.state.Load() == handedOver {
		v.state.Store(streaming)
		v.last.drop()
	}
}

// next makes p the part being sent, counting the frames skipped since
// the last one. Placeholders are numbered by camd, not the camera: only
// gaps between camera frames are frames this viewer skipped.
func (v *viewer) next(p *part) {
	if last := v.last; last != nil && !last.frame.Placeholder && !p.frame.Placeholder && p.frame.Seq > last.frame.Seq+1 {
		v.fd.skipped.Add(p.frame.Seq - last.frame.Seq - 1)
	}
	v.last = p
}

// connWriter writes parts to a connection taken over from net/http. On
// TCP each part is one writev of the part's header, the frame and the
// boundary, shared with every other viewer and never copied, made with a
// raw system call (rawio): with a thousand viewers each part is a
// thousand of them, and through the scheduler the long ones had their
// thread handed over. TLS (whose records are sealed one write at a time)
// has no descriptor to offer, and gets a write per buffer.
type connWriter struct {
	conn net.Conn
	rio  *rawio.Conn // nil: not a plain socket
	iov  [3][]byte   // the part being written
	bufs net.Buffers // what is left of it; writing consumes it
}

func newConnWriter(conn net.Conn) *connWriter {
	c := &connWriter{conn: conn}
	// TCP, as it is or through the SDK's connection counting, which
	// passes its descriptor on.
	if sc, ok := conn.(syscall.Conn); ok {
		if rio, err := rawio.Of(sc); err == nil {
			c.rio = rio
		}
	}
	return c
}

// vectored reports whether a part is one writev.
func (c *connWriter) vectored() bool { return c.rio != nil }

func (c *connWriter) writePart(p *part, deadline time.Time) error {
	c.begin(p)
	return c.finish(deadline)
}

// begin makes p the part to write.
func (c *connWriter) begin(p *part) {
	c.iov = [3][]byte{p.head, p.frame.JPEG, crlfBoundary}
	c.bufs = c.iov[:]
}

// try writes what the socket takes of the part now, without waiting;
// done when it took all of it. Only for a vectored writer.
func (c *connWriter) try() (done bool, err error) {
	_, done, err = c.rio.TryWritev(&c.bufs)
	return done, err
}

// finish writes the rest of the part, waiting while the socket is full
// until deadline.
func (c *connWriter) finish(deadline time.Time) error {
	if err := c.conn.SetWriteDeadline(deadline); err != nil {
		return err
	}
	if c.rio != nil {
		_, err := c.rio.Writev(&c.bufs)
		return err
	}
	_, err := c.bufs.WriteTo(c.conn)
	return err
}

// responseWriter writes parts through net/http.
type responseWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func (r *responseWriter) writePart(p *part, deadline time.Time) error {
	_ = r.rc.SetWriteDeadline(deadline)
	for _, b := range [...][]byte{p.head, p.frame.JPEG, crlfBoundary} {
		if _, err := r.w.Write(b); err != nil {
			return err
		}
	}
	return r.rc.Flush()
}

// dropped accounts for a viewer whose write failed: a timeout means it
// stalled; anything else means it left (or we are stopping).
func (m *MJPEG) dropped(err error, remote, camera string) {
	if errors.Is(err, os.ErrDeadlineExceeded) || isTimeout(err) {
		m.stalled.Add(1)
		m.log.Info("viewer stalled; dropped", "remote", remote, "camera", camera)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// group runs goroutines that outlive the call that starts them (the
// streams of connections taken over from net/http) until its context
// ends, and waits for them.
type group struct {
	mu      sync.Mutex
	ctx     context.Context // nil before start and after stop
	cancel  context.CancelFunc
	running sync.WaitGroup
}

// start lets Go run goroutines until parent ends or stop is called.
func (g *group) start(parent context.Context) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.ctx, g.cancel = context.WithCancel(parent)
}

// Go runs f in a goroutine of g's, with g's context, and reports whether
// it did: not before start or after stop.
func (g *group) Go(f func(ctx context.Context)) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ctx == nil {
		return false
	}
	ctx := g.ctx
	g.running.Go(func() { f(ctx) })
	return true
}

// stop ends g's context and waits for its goroutines.
func (g *group) stop() {
	g.mu.Lock()
	if g.cancel != nil {
		g.cancel()
	}
	g.ctx, g.cancel = nil, nil
	g.mu.Unlock()
	g.running.Wait()
}
