package device

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/camd/camd/sdk/wire"
)

// flakyDevice is a fake ESP32 (the firmware's /capture and /stream) that
// can be killed — its listener and every connection closed — and restored
// on the same address. It checks that camd never holds two connections to
// it at once.
type flakyDevice struct {
	t    *testing.T
	addr string

	status  atomic.Int32 // answer every request with this HTTP status, if set
	corrupt atomic.Bool  // serve frames cut in half
	size    [2]int

	mu       sync.Mutex
	srv      *http.Server
	open     map[net.Conn]bool // accepted and not yet seen closed
	seq      int
	sim      *Sim
	overlaps []string
	requests int
	checks   sync.WaitGroup         // overlap checks in flight
	pending  map[chan struct{}]bool // their done channels
}

// overlapGrace is how long a connection that was open when another one
// was accepted may take to be seen closed. The server learns of a client's
// close asynchronously, so a probe's connection may still look open for a
// moment when the real one arrives (longer on a busy machine); one still
// open seconds later was really held at the same time (a real overlap
// lasts as long as camd holds both). The check ends as soon as the others
// are seen closed, so a test waits this long only for a real overlap.
const overlapGrace = 5 * time.Second

func newFlakyDevice(t *testing.T, w, h int) *flakyDevice {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &flakyDevice{t: t, addr: ln.Addr().String(), open: map[net.Conn]bool{}, pending: map[chan struct{}]bool{}, sim: NewSim(w, h, 1, 60), size: [2]int{w, h}}
	d.serve(ln)
	t.Cleanup(func() {
		d.down()
		d.checks.Wait()
		d.mu.Lock()
		defer d.mu.Unlock()
		for _, o := range d.overlaps {
			t.Errorf("two connections at once: %s", o)
		}
	})
	return d
}

func (d *flakyDevice) url(path string) string { return "http://" + d.addr + path }

// up restores the device on its address.
func (d *flakyDevice) up() {
	d.t.Helper()
	var ln net.Listener
	var err error
	// The port was ours a moment ago; nothing else should take it, but
	// binding may need a retry while the old sockets wind down.
	for range 50 {
		if ln, err = net.Listen("tcp", d.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		d.t.Fatalf("restore device on %s: %v", d.addr, err)
	}
	d.serve(ln)
}

func (d *flakyDevice) serve(ln net.Listener) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /capture", d.capture)
	mux.HandleFunc("GET /stream", d.stream)
	mux.HandleFunc("GET /page", func(w http.ResponseWriter, r *http.Request) { // a router's page, say
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, "<html><body>Welcome</body></html>")
	})
	srv := &http.Server{Handler: mux, ConnState: d.connState}
	d.mu.Lock()
	d.srv = srv
	d.mu.Unlock()
	go srv.Serve(ln)
}

// down kills the device: no listener, every connection closed. The overlap
// checks in flight are settled first (at once, unless camd really holds two
// connections): closing the connections would hide an overlap.
func (d *flakyDevice) down() {
	d.mu.Lock()
	var settled []chan struct{}
	for done := range d.pending {
		settled = append(settled, done)
	}
	d.mu.Unlock()
	for _, done := range settled {
		<-done
	}
	d.mu.Lock()
	srv := d.srv
	d.srv = nil
	var conns []net.Conn
	for c := range d.open {
		conns = append(conns, c)
	}
	clear(d.open)
	d.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
	for _, c := range conns {
		c.Close() // hijacked stream connections are not the server's to close
	}
}

func (d *flakyDevice) connState(c net.Conn, s http.ConnState) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch s {
	case http.StateNew:
		var others []net.Conn
		for o := range d.open {
			others = append(others, o)
		}
		d.open[c] = true
		if len(others) == 0 {
			return
		}
		d.checks.Add(1)
		done := make(chan struct{})
		d.pending[done] = true
		go func() {
			defer d.checks.Done()
			defer func() {
				d.mu.Lock()
				delete(d.pending, done)
				d.mu.Unlock()
				close(done)
			}()
			deadline := time.Now().Add(overlapGrace)
			for {
				d.mu.Lock()
				var still []net.Conn
				for _, o := range others {
					if d.open[o] {
						still = append(still, o)
					}
				}
				if len(still) == 0 {
					d.mu.Unlock()
					return
				}
				if time.Now().After(deadline) {
					for _, o := range still {
						d.overlaps = append(d.overlaps, fmt.Sprintf("%s still open %v after %s connected", o.RemoteAddr(), overlapGrace, c.RemoteAddr()))
					}
					d.mu.Unlock()
					return
				}
				d.mu.Unlock()
				time.Sleep(10 * time.Millisecond)
			}
		}()
	case http.StateClosed:
		delete(d.open, c)
	}
}

func (d *flakyDevice) closed(c net.Conn) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.open, c)
}

func (d *flakyDevice) frame() ([]byte, int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seq++
	b, err := d.sim.Frame(uint64(d.seq), time.Now())
	if err != nil {
		d.t.Error(err)
	}
	if d.corrupt.Load() {
		b = b[:len(b)/2]
	}
	return b, d.seq
}

func (d *flakyDevice) requestCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.requests
}

// fail counts a request and answers it with the status set, if any.
func (d *flakyDevice) fail(w http.ResponseWriter) bool {
	d.mu.Lock()
	d.requests++
	d.mu.Unlock()
	code := int(d.status.Load())
	if code == 0 {
		return false
	}
	http.Error(w, http.StatusText(code), code)
	return true
}

func (d *flakyDevice) capture(w http.ResponseWriter, r *http.Request) {
	if d.fail(w) {
		return
	}
	b, seq := d.frame()
	w.Header().Set("Content-Type", "image/jpeg")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.Header().Set("X-Frame-Seq", strconv.Itoa(seq))
	w.Write(b)
}

// stream serves the firmware's framing (HTTP/1.0, delimiter after each
// part) at about 25 fps until the client or down() closes the connection.
func (d *flakyDevice) stream(w http.ResponseWriter, r *http.Request) {
	if d.fail(w) {
		return
	}
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		d.t.Error(err)
		return
	}
	defer d.closed(conn)
	defer conn.Close()
	const b = "123456789000000000000987654321"
	bw := bufio.NewWriter(conn)
	fmt.Fprintf(bw, "HTTP/1.0 200 OK\r\nConnection: close\r\nContent-Type: multipart/x-mixed-replace;boundary=%s\r\n\r\n--%s\r\n", b, b)
	for {
		f, _ := d.frame()
		fmt.Fprintf(bw, "Content-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n", len(f))
		bw.Write(f)
		fmt.Fprintf(bw, "\r\n--%s\r\n", b)
		if bw.Flush() != nil {
			return
		}
		time.Sleep(40 * time.Millisecond)
	}
}

// recorder collects what a Camera emits and checks that emit is never
// called concurrently.
type recorder struct {
	t        *testing.T
	inflight atomic.Int32
	mu       sync.Mutex
	frames   []recorded
	stopped  bool // Run returned: no emit may follow
}

type recorded struct {
	wire.Frame
	at time.Time
}

// emit keeps every frame.
func (r *recorder) emit(f wire.Frame) bool {
	if r.inflight.Add(1) != 1 {
		r.t.Errorf("emit called concurrently (frame %d)", f.Seq)
	}
	defer r.inflight.Add(-1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		r.t.Errorf("emit after Run returned (frame %d, placeholder %v)", f.Seq, f.Placeholder)
	}
	r.frames = append(r.frames, recorded{f, time.Now()})
	return true
}

func (r *recorder) snapshot() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recorded(nil), r.frames...)
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// firstAfter returns the first recorded frame after time t0 that pred
// accepts.
func (r *recorder) firstAfter(t0 time.Time, pred func(recorded) bool) (recorded, bool) {
	for _, f := range r.snapshot() {
		if f.at.After(t0) && pred(f) {
			return f, true
		}
	}
	return recorded{}, false
}

func live(f recorded) bool         { return !f.Placeholder }
func placeholderF(f recorded) bool { return f.Placeholder }

// logBuffer is a slog text sink for assertions on what was logged.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// count returns how many lines are at level and have msg as their message.
func (l *logBuffer) count(level, msg string) int {
	n := 0
	for _, line := range strings.Split(l.String(), "\n") {
		if strings.Contains(line, "level="+level+" ") && (strings.Contains(line, "msg="+strconv.Quote(msg)+" ") || strings.Contains(line, "msg="+msg+" ")) {
			n++
		}
	}
	return n
}

func newLog() (*slog.Logger, *logBuffer) {
	buf := &logBuffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// running is a Camera started by start.
type running struct {
	cam  *Camera
	rec  *recorder
	log  *logBuffer
	stop func()
}

// start runs cam until stop or the test's end, recording frames and logs.
func start(t *testing.T, cam *Camera) *running {
	t.Helper()
	log, buf := newLog()
	cam.Log = log
	rec := &recorder{t: t}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		cam.Run(ctx, rec.emit)
		rec.mu.Lock()
		rec.stopped = true
		rec.mu.Unlock()
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Errorf("Run did not return 10s after its context ended")
			}
		})
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("camera log:\n%s", buf.String())
		}
	})
	return &running{cam: cam, rec: rec, log: buf, stop: stop}
}
