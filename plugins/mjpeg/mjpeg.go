package main

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/camd/camd/sdk"
)

// Boundary separates the parts of every stream. It is the one ESP32
// CameraWebServer and ESPHome use, which some clients expect.
const Boundary = "123456789000000000000987654321"

//go:embed sample.yaml
var sampleConfig string

// Config is the output's config block.
type Config struct {
	Listen       string       `yaml:"listen"`
	MaxViewers   int          `yaml:"max_viewers"`
	WriteTimeout sdk.Duration `yaml:"write_timeout"`
}

// MJPEG serves each camera's frames to any number of viewers. Each viewer
// is sent the newest frame whenever it is ready for one, so a slow viewer
// skips frames and never holds up the others; the frame bytes are shared,
// never copied per viewer.
type MJPEG struct {
	cfg   Config
	log   *slog.Logger
	feeds map[string]*feed

	ln      net.Listener
	srv     *http.Server
	ctx     context.Context // ends when Stop is called; ends viewers' streams
	cancel  context.CancelFunc
	viewers atomic.Int64
	stalled atomic.Uint64 // viewers dropped for not reading
	refused atomic.Uint64 // viewers refused by max_viewers
}

// feed is one camera's newest frame, ready to send, and its counters.
type feed struct {
	latest sdk.Latest[*part]

	frames  atomic.Uint64
	viewers atomic.Int64
	sent    atomic.Uint64
	skipped atomic.Uint64
}

// part is a frame ready to send: its part header is formatted once, for
// every viewer.
type part struct {
	seq  uint64
	head []byte
	jpeg []byte
}

// Configure implements sdk.Output.
func (m *MJPEG) Configure(c sdk.Config) error {
	m.cfg = Config{Listen: "127.0.0.1:8081", MaxViewers: 100, WriteTimeout: sdk.Duration(5 * time.Second)}
	errs := sdk.AsConfigErrors(sdk.DecodeConfig(c.Raw, &m.cfg))
	if _, _, err := net.SplitHostPort(m.cfg.Listen); err != nil {
		errs = append(errs, sdk.Errorf("listen", "want host:port, e.g. 127.0.0.1:8081"))
	}
	if m.cfg.MaxViewers < 1 {
		errs = append(errs, sdk.Errorf("max_viewers", "must be at least 1"))
	}
	if m.cfg.WriteTimeout <= 0 {
		errs = append(errs, sdk.Errorf("write_timeout", "must be positive, e.g. 5s"))
	}
	m.log = c.Log
	m.feeds = map[string]*feed{}
	for _, cam := range c.Cameras {
		m.feeds[cam] = &feed{}
	}
	return errs.Err()
}

// Start implements sdk.Output.
func (m *MJPEG) Start(context.Context) ([]string, error) {
	ln, err := net.Listen("tcp", m.cfg.Listen)
	if err != nil {
		return nil, err
	}
	m.ln = ln
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.srv = &http.Server{
		Handler:           m.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       60 * time.Second,
		// No WriteTimeout: streams are long-lived; each frame write has its
		// own deadline instead.
		BaseContext: func(net.Listener) context.Context { return m.ctx },
	}
	go func() {
		if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.log.Error("serve", "err", err)
		}
	}()
	base := "http://" + ln.Addr().String()
	urls := []string{base + "/"}
	for cam := range m.feeds {
		urls = append(urls, base+"/cameras/"+cam+"/stream.mjpg")
	}
	m.log.Info("listening", "addr", ln.Addr().String())
	return urls, nil
}

// Stop implements sdk.Output. Streams never go idle, so they are ended
// through the server's base context before Shutdown waits for idle
// connections.
func (m *MJPEG) Stop(ctx context.Context) error {
	if m.srv == nil {
		return nil
	}
	m.cancel()
	return m.srv.Shutdown(ctx)
}

// HandleFrame implements sdk.Output.
func (m *MJPEG) HandleFrame(f sdk.Frame) {
	fd, ok := m.feeds[f.Camera]
	if !ok {
		return
	}
	ts := f.Captured.UnixMicro()
	head := fmt.Appendf(nil, "Content-Type: image/jpeg\r\nContent-Length: %d\r\nX-Timestamp: %d.%06d\r\nX-Frame-Seq: %d\r\n\r\n", len(f.JPEG), ts/1e6, ts%1e6, f.Seq)
	fd.frames.Add(1)
	fd.latest.Set(&part{seq: f.Seq, head: head, jpeg: f.JPEG})
}

// Handler returns the plugin's HTTP routes.
func (m *MJPEG) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", m.serveIndex)
	mux.HandleFunc("GET /cameras/{camera}/stream.mjpg", m.serveStream)
	return mux
}

var crlfBoundary = []byte("\r\n--" + Boundary + "\r\n")

func (m *MJPEG) serveStream(w http.ResponseWriter, r *http.Request) {
	fd, ok := m.feeds[r.PathValue("camera")]
	if !ok {
		http.Error(w, "no such camera", http.StatusNotFound)
		return
	}
	if n := m.viewers.Add(1); n > int64(m.cfg.MaxViewers) {
		m.viewers.Add(-1)
		m.refused.Add(1)
		w.Header().Set("Retry-After", "5")
		http.Error(w, fmt.Sprintf("too many viewers (max_viewers is %d)", m.cfg.MaxViewers), http.StatusServiceUnavailable)
		return
	}
	defer m.viewers.Add(-1)
	fd.viewers.Add(1)
	defer fd.viewers.Add(-1)

	// ?fps=N caps this viewer's rate (e.g. a dashboard thumbnail).
	var minGap time.Duration
	if v, err := strconv.ParseFloat(r.URL.Query().Get("fps"), 64); err == nil && v > 0 {
		minGap = time.Duration(float64(time.Second) / v)
	}

	h := w.Header()
	h.Set("Content-Type", "multipart/x-mixed-replace; boundary="+Boundary)
	h.Set("Cache-Control", "no-store, no-cache, must-revalidate, max-age=0")
	h.Set("Pragma", "no-cache")
	h.Set("Connection", "close")
	h.Set("X-Accel-Buffering", "no") // tell nginx not to buffer
	h.Set("Access-Control-Allow-Origin", "*")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	timeout := time.Duration(m.cfg.WriteTimeout)
	_ = rc.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := w.Write(crlfBoundary[2:]); err != nil {
		return
	}
	if err := rc.Flush(); err != nil {
		return
	}

	var (
		last     *part
		ver      uint64
		lastSent time.Time
	)
	for {
		p, v, err := fd.latest.Next(r.Context(), ver)
		if err != nil {
			return
		}
		ver = v
		if last != nil && p.seq > last.seq+1 {
			fd.skipped.Add(p.seq - last.seq - 1)
		}
		last = p
		// The deadline covers the whole part: a viewer that stops reading
		// is dropped after write_timeout instead of pinning a goroutine.
		_ = rc.SetWriteDeadline(time.Now().Add(timeout))
		// The next boundary goes right after the frame, so browsers show the
		// frame at once instead of when the next one starts.
		if _, err := w.Write(p.head); err == nil {
			if _, err = w.Write(p.jpeg); err == nil {
				if _, err = w.Write(crlfBoundary); err == nil {
					err = rc.Flush()
				}
			}
			if err != nil {
				m.dropped(err, r)
				return
			}
		} else {
			m.dropped(err, r)
			return
		}
		fd.sent.Add(1)
		if minGap > 0 {
			wait := minGap - time.Since(lastSent)
			lastSent = time.Now()
			if wait > 0 {
				select {
				case <-r.Context().Done():
					return
				case <-time.After(wait):
				}
			}
		}
	}
}

// dropped accounts for a viewer whose write failed: a timeout means it
// stalled; anything else means it left (or we are stopping).
func (m *MJPEG) dropped(err error, r *http.Request) {
	if errors.Is(err, os.ErrDeadlineExceeded) || isTimeout(err) {
		m.stalled.Add(1)
		m.log.Info("viewer stalled; dropped", "remote", r.RemoteAddr, "camera", r.PathValue("camera"))
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

var indexTmpl = template.Must(template.New("index").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>camd MJPEG</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:system-ui,sans-serif;margin:1em;background:#111;color:#eee}figure{display:inline-block;margin:.5em}img{max-width:100%;background:#333;min-width:160px;min-height:120px}a{color:#9cf}</style>
</head><body>
{{range .}}<figure><img src="cameras/{{.}}/stream.mjpg" alt="{{.}}"><figcaption>{{.}} · <a href="cameras/{{.}}/stream.mjpg">stream.mjpg</a></figcaption></figure>
{{else}}<p>No cameras.</p>{{end}}
</body></html>
`))

func (m *MJPEG) serveIndex(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = indexTmpl.Execute(w, m.cameraNames())
}

func (m *MJPEG) cameraNames() []string { return slices.Sorted(maps.Keys(m.feeds)) }

// cameraStatus is one camera's counters in Status.
type cameraStatus struct {
	Frames  uint64 `json:"frames"`
	Viewers int64  `json:"viewers"`
	Sent    uint64 `json:"sent"`
	Skipped uint64 `json:"skipped"` // frames viewers skipped because they were slower than the camera
}

// Status implements sdk.StatusReporter.
func (m *MJPEG) Status() any {
	cams := map[string]cameraStatus{}
	for name, fd := range m.feeds {
		cams[name] = cameraStatus{Frames: fd.frames.Load(), Viewers: fd.viewers.Load(), Sent: fd.sent.Load(), Skipped: fd.skipped.Load()}
	}
	return map[string]any{
		"viewers": m.viewers.Load(), "stalled_dropped": m.stalled.Load(), "refused": m.refused.Load(), "cameras": cams,
	}
}

// Interface guards.
var (
	_ sdk.Output         = (*MJPEG)(nil)
	_ sdk.StatusReporter = (*MJPEG)(nil)
)
