package device

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// MaxFrameBytes is the largest frame a source accepts. A 4K JPEG is about
// 3 MB; anything near this is a broken device, not a picture.
const MaxFrameBytes = 16 << 20

// Timeouts for a device that vanishes without a reset (Wi-Fi lost, power
// cut): an ESP32 answers /capture in about 100 ms and streams several
// frames a second, so silence for a few seconds means it is gone. Frames
// stop showing long before (Camera.OfflineAfter); these only decide when
// camd gives up on the connection and starts probing for the device's
// return.
const (
	dialTimeout  = 3 * time.Second
	probeTimeout = time.Second
	// answerTimeout is the part of deviceTimeout that does not depend on
	// the frame rate.
	answerTimeout = 3 * time.Second
)

// deviceTimeout is how long a device at fps may stay silent: one /capture
// request from connect to last byte, or a stream that sends not a byte.
// It is answerTimeout plus two frame intervals (3.2 s at 10 fps), or 5 s
// when the rate is unknown (an MJPEG URL may send only when something
// moves).
func deviceTimeout(fps float64) time.Duration {
	if fps <= 0 {
		return 5 * time.Second
	}
	return answerTimeout + time.Duration(2*float64(time.Second)/fps)
}

// newClient returns an HTTP client that uses at most one connection: an
// ESP32 has 8 sockets in all, shared with everything else it does.
// lw, when not nil, learns the connection it dials (see lowat).
func newClient(lw *lowat) *http.Client {
	dial := (&net.Dialer{Timeout: dialTimeout, KeepAlive: 15 * time.Second}).DialContext
	if lw != nil {
		dial = lw.dialer(dial)
	}
	return &http.Client{CheckRedirect: keepLoginOnlyHome, Transport: &http.Transport{
		Proxy:                 nil,
		DialContext:           dial,
		ReadBufferSize:        transportBuffer,
		MaxConnsPerHost:       1,
		MaxIdleConnsPerHost:   1,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: 10 * time.Second, // a backstop: requests have their own deadlines
		DisableCompression:    true,
	}}
}

// keepLoginOnlyHome follows up to 10 redirects, as net/http does, but
// sends the camera's login (an Authorization header net/http would copy to
// any port and scheme of the same host) only where the request first went:
// never to another port, nor from https down to http.
func keepLoginOnlyHome(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	if first := via[0].URL; req.URL.Scheme != first.Scheme || req.URL.Host != first.Host {
		req.Header.Del("Authorization")
	}
	return nil
}

// Prober is implemented by sources that can tell cheaply whether their
// device is reachable, without asking it for a frame. Camera probes an
// unreachable device every few hundred milliseconds, so frames resume
// within half a second of its return, and retries the real connection
// only once a probe got through.
type Prober interface {
	// Probe returns nil if the device accepts a connection now. Whatever
	// it opens is closed before it returns.
	Probe(ctx context.Context) error
}

// probeTCP connects to rawURL's host and port and hangs up at once: the
// cheapest thing that proves an ESP32 is back (a TCP handshake and a FIN,
// no request for its camera to serve).
func probeTCP(ctx context.Context, rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("probe %s: %w", RedactURL(rawURL), errInvalidURL)
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	d := net.Dialer{Timeout: probeTimeout}
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(u.Hostname(), port))
	if err != nil {
		return err // dial tcp HOST:PORT: ...: no userinfo, no query
	}
	return conn.Close()
}

// errInvalidURL stands for url.Parse's error, whose text may quote the
// parts of the URL it choked on (a password, when one contains a "/").
var errInvalidURL = errors.New("invalid URL")

// answeredError marks a failure after the device answered a request: it is
// there, so it is retried with backoff rather than probed for.
type answeredError struct{ err error }

func (e *answeredError) Error() string { return e.err.Error() }
func (e *answeredError) Unwrap() error { return e.err }

func answered(err error) error { return &answeredError{err} }

// StatusError is a device's answer with an HTTP status other than 200.
type StatusError struct {
	URL    string // redacted
	Code   int
	Status string // "401 Unauthorized"
}

func (e *StatusError) Error() string { return "GET " + e.URL + ": " + e.Status }

// errNotMJPEG is wrapped by the error for a stream URL that answers with
// something else (an HTML page, a single JPEG).
var errNotMJPEG = errors.New("not an MJPEG stream")

// Capture pulls single JPEGs from a raw JPEG endpoint (the firmware's
// /capture) over one keep-alive connection.
type Capture struct {
	Token string // sent as a bearer token when set
	// Timeout bounds how long one request may wait for the answer, and
	// then for each next byte of the frame: a large frame over weak Wi-Fi
	// is not cut while its bytes flow (a whole frame may take up to
	// maxCaptureTime). 0 derives it from fps (see deviceTimeout).
	Timeout time.Duration

	url     string
	safeURL string  // for error texts
	fps     float64 // 0: as fast as the device answers
	client  *http.Client
	lowat   *lowat // nil for https
	auth    *auth  // from the first request on
}

// NewCapture returns a source polling url at fps.
func NewCapture(url string, fps float64) *Capture {
	c := &Capture{url: url, safeURL: RedactURL(url), fps: fps}
	if strings.HasPrefix(url, "http:") {
		c.lowat = &lowat{}
	}
	c.client = newClient(c.lowat)
	return c
}

// Probe implements Prober. A connection the client still keeps (a dial
// that finished after its request gave up) is closed first, so the probe
// is the only connection to the device.
func (c *Capture) Probe(ctx context.Context) error {
	c.client.CloseIdleConnections()
	return probeTCP(ctx, c.url)
}

// Stream implements Source.
func (c *Capture) Stream(ctx context.Context, emit func(RawFrame) bool) error {
	// A failed connection is not reused for the next attempt, and none is
	// left open for a probe to compete with.
	defer c.client.CloseIdleConnections()
	var tick <-chan time.Time
	if c.fps > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / c.fps))
		defer t.Stop()
		tick = t.C
	}
	// A device that answers 200 with something else than a JPEG (a
	// router's or captive portal's page) would be polled as fast as it
	// answers: bad frames are followed by a growing wait, as any other
	// failure is, and the next good frame ends it.
	retry := newBackoff(defaultMinRetry, defaultMaxRetry)
	lastSeq := ""
	var spare []byte // the last frame's bytes if emit did not keep them
	for {
		f, seq, err := c.get(ctx, spare)
		spare = nil
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		wait := tick
		// The firmware numbers frames; the same number twice means the
		// board had nothing newer (we polled faster than it captures).
		if seq == "" || seq != lastSeq {
			if _, _, _, err := CheckJPEG(f.JPEG, 0); err != nil {
				wait = time.After(retry.next())
			} else {
				retry.reset()
			}
			if !emit(f) {
				spare = f.JPEG
			}
		} else {
			spare = f.JPEG
		}
		lastSeq = seq
		if !pause(ctx, wait) {
			return ctx.Err()
		}
	}
}

// pause waits for next, if not nil, or until ctx ends (false).
func pause(ctx context.Context, next <-chan time.Time) bool {
	if next == nil {
		return ctx.Err() == nil
	}
	select {
	case <-ctx.Done():
		return false
	case <-next:
		return true
	}
}

// get fetches one frame, into spare if it is large enough.
func (c *Capture) get(ctx context.Context, spare []byte) (RawFrame, string, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = deviceTimeout(c.fps)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// Silence ends the request, not length: reads push the timer back,
	// and so do bytes the low-water mark keeps waiting in the socket (the
	// reader sleeps until a large frame's last byte).
	var quiet *time.Timer
	var headers atomic.Bool // the answer came: silence now is a stall
	var mu sync.Mutex       // orders a re-arm against the Stop below
	over := false
	seen := c.arrivedNow()
	quiet = time.AfterFunc(timeout, func() {
		if now := c.arrivedNow(); now != seen {
			// Bytes came (on a new connection: any at all).
			life := now.arrived != seen.arrived && (now.c == seen.c || now.arrived > 0)
			seen = now
			if life {
				mu.Lock()
				if !over {
					quiet.Reset(timeout)
				}
				mu.Unlock()
				return
			}
		}
		if headers.Load() {
			cancel(fmt.Errorf("%w: nothing for %v", errStalled, timeout))
		} else {
			cancel(fmt.Errorf("no answer within %v: %w", timeout, context.DeadlineExceeded))
		}
	})
	defer func() {
		mu.Lock()
		over = true
		quiet.Stop()
		mu.Unlock()
	}()
	long := time.AfterFunc(maxCaptureTime, func() { cancel(fmt.Errorf("no whole frame within %v", maxCaptureTime)) })
	defer long.Stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return RawFrame{}, "", fmt.Errorf("GET %s: %w", c.safeURL, errInvalidURL)
	}
	if c.auth == nil {
		c.auth = newAuth(req, c.Token)
	}
	resp, err := c.auth.do(c.client, req)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil && !errors.Is(cause, context.Canceled) {
			return RawFrame{}, "", fmt.Errorf("GET %s: %w", c.safeURL, cause)
		}
		return RawFrame{}, "", redactErr(err)
	}
	defer resp.Body.Close()
	captured := time.Now()
	headers.Store(true)
	quiet.Reset(timeout)
	bodyR := io.Reader(quietReader{resp.Body, quiet, timeout})
	if resp.StatusCode != http.StatusOK {
		// Drain a short error body so the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return RawFrame{}, "", answered(&StatusError{URL: c.safeURL, Code: resp.StatusCode, Status: resp.Status})
	}
	if resp.ContentLength > MaxFrameBytes {
		return RawFrame{}, "", answered(fmt.Errorf("GET %s: %w: %d bytes", c.safeURL, ErrFrameTooLarge, resp.ContentLength))
	}
	var body []byte
	if resp.ContentLength >= 0 {
		if int64(cap(spare)) >= resp.ContentLength {
			body = spare[:resp.ContentLength]
		} else {
			body = make([]byte, resp.ContentLength)
		}
		if c.lowat != nil {
			c.lowat.expect(int(resp.ContentLength) - transportBuffer)
			defer c.lowat.expect(0)
		}
		_, err = io.ReadFull(bodyR, body)
	} else {
		body, err = readAllInto(spare[:0], io.LimitReader(bodyR, MaxFrameBytes+1))
	}
	if err != nil {
		if cause := context.Cause(ctx); ctx.Err() != nil && cause != nil && !errors.Is(cause, context.Canceled) {
			err = cause
		}
		return RawFrame{}, "", answered(fmt.Errorf("GET %s: reading body: %w", c.safeURL, err))
	}
	return RawFrame{JPEG: body, Captured: captured}, resp.Header.Get("X-Frame-Seq"), nil
}

// readAllInto is io.ReadAll appending to buf.
func readAllInto(buf []byte, r io.Reader) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// MJPEG reads a multipart/x-mixed-replace stream: the firmware's /stream,
// CameraWebServer's :81/stream, ESPHome, mjpg-streamer, go2rtc or an IP
// camera.
type MJPEG struct {
	Token string // sent as a bearer token when set
	// Idle is how long the stream may send nothing, not a byte, before it
	// is dropped as stalled: a board that lost Wi-Fi mid-frame leaves the
	// TCP connection open. A frame that takes longer than Idle to arrive
	// (a large one over weak Wi-Fi) is not cut while its bytes flow.
	// 0 means 5 s.
	Idle time.Duration
	// FPS is the rate at which a URL that answers with a still
	// (image/jpeg, a snapshot URL) is polled instead; 0: as fast as it
	// answers.
	FPS float64

	url     string
	safeURL string // for error texts
	client  *http.Client
	lowat   *lowat // nil for https
	auth    *auth  // from the first request on
}

// NewMJPEG returns a source reading the MJPEG stream at url.
func NewMJPEG(url string) *MJPEG {
	m := &MJPEG{url: url, safeURL: RedactURL(url)}
	if strings.HasPrefix(url, "http:") {
		m.lowat = &lowat{}
	}
	m.client = newClient(m.lowat)
	return m
}

// Probe implements Prober, as Capture's does.
func (m *MJPEG) Probe(ctx context.Context) error {
	m.client.CloseIdleConnections()
	return probeTCP(ctx, m.url)
}

// errStalled is the cause of a stream's end when it sent nothing for its
// Idle time.
var errStalled = errors.New("stream stalled")

// Stream implements Source.
func (m *MJPEG) Stream(ctx context.Context, emit func(RawFrame) bool) error {
	parent := ctx
	defer m.client.CloseIdleConnections()
	idle := m.Idle
	if idle <= 0 {
		idle = deviceTimeout(0)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel: defers run last first
	defer cancel(nil)
	wd := newWatchdog(idle)
	wg.Go(func() { wd.run(ctx, cancel) })

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.url, nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", m.safeURL, errInvalidURL)
	}
	if m.auth == nil {
		m.auth = newAuth(req, m.Token)
	}
	resp, err := m.auth.do(m.client, req)
	if err != nil {
		if cause := context.Cause(ctx); errors.Is(cause, errStalled) {
			return fmt.Errorf("GET %s: no answer: %w", m.safeURL, cause)
		}
		return redactErr(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return answered(&StatusError{URL: m.safeURL, Code: resp.StatusCode, Status: resp.Status})
	}
	boundary, ok := multipartBoundary(resp.Header.Get("Content-Type"))
	if !ok && isJPEGType(resp.Header.Get("Content-Type")) {
		// A still (an IP camera's snapshot URL): polled, as go2rtc does,
		// on the same connection and credentials.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, MaxFrameBytes))
		resp.Body.Close()
		c := &Capture{url: m.url, safeURL: m.safeURL, fps: m.FPS, client: m.client, lowat: m.lowat, auth: m.auth}
		return c.Stream(parent, emit)
	}
	if !ok {
		return answered(fmt.Errorf("GET %s: %w (Content-Type %q)", m.safeURL, errNotMJPEG, resp.Header.Get("Content-Type")))
	}
	wd.touch()
	// The watchdog counts the bytes arriving on the connection (the
	// client holds one, dialed for this request); without one to count,
	// every read that gets bytes tells it.
	var body io.Reader = touchReader{resp.Body, wd}
	if m.lowat != nil && wd.watchConn(m.lowat.conn.Load()) {
		body = resp.Body
	}

	r := NewMultipartReader(body, boundary, MaxFrameBytes)
	if m.lowat != nil {
		r.Expect = func(n int) { m.lowat.expect(max(0, n-transportBuffer)) }
	}
	for {
		_, body, err := r.NextPart()
		if err != nil {
			if cause := context.Cause(ctx); cause != nil {
				if errors.Is(cause, errStalled) {
					return answered(fmt.Errorf("GET %s: %w", m.safeURL, cause))
				}
				return ctx.Err()
			}
			if err == io.EOF {
				return answered(fmt.Errorf("GET %s: stream ended: %w", m.safeURL, io.EOF))
			}
			return answered(fmt.Errorf("GET %s: %w", m.safeURL, err))
		}
		if !emit(RawFrame{JPEG: body, Captured: time.Now()}) {
			r.Recycle(body)
		}
	}
}

// watchdog ends a stream its device stopped sending on, from the connect
// on: a board that lost Wi-Fi mid-frame leaves the TCP connection open.
// Only silence trips it. A large frame over weak Wi-Fi may take longer
// than idle to arrive, and while its bytes flow the stream is alive.
//
// On a plain connection the watchdog counts the bytes that came in on it
// (read, or waiting while the low-water mark keeps the reader asleep
// until a frame's last byte; see lowat), with a system call, and looks
// every half idle: silence in the middle of a frame is noticed up to half
// an idle late. Otherwise (https) each read that gets bytes stores the
// time (touchReader). Either way the reader never resets a timer or sends
// on a channel: that would wake a thread per read, most of an idle
// camera's cost.
type watchdog struct {
	idle  time.Duration
	alive atomic.Int64             // unix ns of the latest sign of life: connect, headers, a read
	conn  atomic.Pointer[connSeen] // the response's connection, when it has a mark
	seen  connSeen                 // the watchdog's own view of conn
}

// connSeen is how many bytes had arrived on a connection when they were
// last seen to change.
type connSeen struct {
	c       *lowatConn
	arrived int64
	at      time.Time
}

func newWatchdog(idle time.Duration) *watchdog {
	w := &watchdog{idle: idle}
	w.touch()
	return w
}

// touch records a sign of life now.
func (w *watchdog) touch() { w.alive.Store(time.Now().UnixNano()) }

// watchConn has the watchdog count the bytes arriving on c as signs of
// life, read or not; false, with nothing done, when c is nil.
func (w *watchdog) watchConn(c *lowatConn) bool {
	if c == nil {
		return false
	}
	w.conn.Store(&connSeen{c: c, arrived: c.arrived(), at: time.Now()})
	return true
}

// look returns how long the stream has been silent at now, and when to
// look again.
func (w *watchdog) look(now time.Time) (quiet, next time.Duration) {
	quiet = now.Sub(time.Unix(0, w.alive.Load()))
	cs := w.conn.Load()
	if cs == nil {
		return quiet, w.idle - quiet
	}
	if w.seen.c != cs.c {
		w.seen = *cs
	}
	if n := cs.c.arrived(); n != w.seen.arrived {
		// Bytes came in since the last look, though the reader may
		// not have seen them: at the latest, now.
		w.seen.arrived, w.seen.at = n, now
	}
	quiet = min(quiet, now.Sub(w.seen.at))
	return quiet, min(w.idle-quiet, w.idle/2)
}

// run cancels the stream with errStalled once it has been quiet for
// idle, and returns then or when ctx ends.
func (w *watchdog) run(ctx context.Context, cancel context.CancelCauseFunc) {
	t := time.NewTimer(w.idle)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			quiet, next := w.look(now)
			if quiet >= w.idle {
				cancel(fmt.Errorf("%w: nothing for %v", errStalled, w.idle))
				return
			}
			t.Reset(next)
		}
	}
}

// touchReader is a response body that tells its watchdog about every
// read that got bytes.
type touchReader struct {
	r  io.Reader
	wd *watchdog
}

func (t touchReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		t.wd.touch()
	}
	return n, err
}

// multipartBoundary returns the boundary a multipart Content-Type declares,
// as leniently as ffmpeg and go2rtc read it: camera firmwares write
// unquoted spaces and colons (boundary=--video boundary--), which
// mime.ParseMediaType refuses. ok is false for anything but multipart; a
// multipart type without a boundary gives "", and the reader takes the
// first delimiter-looking line it meets.
func multipartBoundary(contentType string) (boundary string, ok bool) {
	if mt, params, err := mime.ParseMediaType(contentType); err == nil {
		return params["boundary"], strings.HasPrefix(mt, "multipart/")
	}
	mt, rest, _ := strings.Cut(contentType, ";")
	if !strings.HasPrefix(strings.ToLower(strings.TrimSpace(mt)), "multipart/") {
		return "", false
	}
	i := strings.Index(strings.ToLower(rest), "boundary=")
	if i < 0 {
		return "", true
	}
	b, _, _ := strings.Cut(rest[i+len("boundary="):], ";")
	return strings.Trim(strings.TrimSpace(b), `"`), true
}

// isJPEGType reports whether a Content-Type is a single JPEG image.
func isJPEGType(contentType string) bool {
	mt, _, _ := strings.Cut(contentType, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	return mt == "image/jpeg" || mt == "image/jpg" || mt == "image/pjpeg"
}

// arrivedNow identifies the bytes that have come in on the connection a
// capture uses, when it has a low-water mark: a change is a sign of life.
func (c *Capture) arrivedNow() connSeen {
	if c.lowat == nil {
		return connSeen{}
	}
	lc := c.lowat.conn.Load()
	if lc == nil {
		return connSeen{}
	}
	return connSeen{c: lc, arrived: lc.arrived()}
}

// maxCaptureTime bounds one capture however its bytes flow: a device that
// trickles a byte a second is not a camera that works.
const maxCaptureTime = 60 * time.Second

// quietReader pushes a timer back on every read that got bytes: the
// request it guards fails after d of silence, not after d in all.
type quietReader struct {
	r io.Reader
	t *time.Timer
	d time.Duration
}

func (q quietReader) Read(p []byte) (int, error) {
	n, err := q.r.Read(p)
	if n > 0 {
		q.t.Reset(q.d)
	}
	return n, err
}
