package main

import (
	"context"
	_ "embed"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/camd/camd/sdk"
	"github.com/camd/camd/sdk/look"
)

// Boundary separates the parts of every stream. It is the one ESP32
// CameraWebServer and ESPHome use, which some clients expect.
const Boundary = "123456789000000000000987654321"

//go:embed sample.yaml
var sampleConfig string

// Config is the output's config block.
type Config struct {
	sdk.HTTPConfig `yaml:",inline"` // listen, max_viewers_per_client
	// MaxViewers caps concurrent streams over all cameras.
	MaxViewers int `yaml:"max_viewers"`
	// WriteTimeout drops a viewer that takes longer to accept one frame.
	WriteTimeout sdk.Duration `yaml:"write_timeout"`
}

// MJPEG serves each camera's frames to any number of viewers. Each viewer
// is sent the newest frame whenever it is ready for one, so a slow viewer
// skips frames and never holds up the others; the frame bytes are shared,
// never copied per viewer.
type MJPEG struct {
	cfg  Config
	log  *slog.Logger
	http *sdk.HTTP

	// feeds maps camera names to feeds. SetCameras replaces the whole map,
	// so HandleFrame and requests read it without locking.
	feeds   atomic.Pointer[map[string]*feed]
	setMu   sync.Mutex    // serializes SetCameras
	stalled atomic.Uint64 // viewers dropped for not reading
	// streams are the viewers' streams on connections taken over from
	// net/http, which outlive their requests: Stop ends them and waits.
	streams group
}

// feed is one camera's newest frame, ready to send, and its counters.
type feed struct {
	// latest is the newest part, nil before the first frame. Read
	// without locking by every viewer when woken; replaced by publish.
	latest atomic.Pointer[part]
	// fanout sends each published part to the feed's viewers.
	fanout fanout
	// removed ends when the camera is removed from the output: its viewers'
	// streams end then.
	removed context.Context
	remove  context.CancelFunc

	frames  atomic.Uint64
	viewers atomic.Int64
	sent    atomic.Uint64
	skipped atomic.Uint64
}

func newFeed() *feed {
	f := &feed{}
	f.removed, f.remove = context.WithCancel(context.Background())
	return f
}

// publish makes p the feed's latest part and sends it to the viewers. The
// feed holds p until the next part replaces it.
func (f *feed) publish(p *part) {
	p.refs.Store(1)
	old := f.latest.Swap(p)
	f.fanout.publish(p)
	if old != nil {
		old.drop()
	}
}

// wakeUp leaves a wake-up in ch (capacity 1) unless one is waiting there.
func wakeUp(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// part is a frame ready to send, built once per frame and shared read-only
// by every viewer, which writes head, jpeg and the boundary in one writev.
//
// Its frame is released (sdk.Frame.Release: the SDK reads a later frame
// into the bytes) when the last holder drops it: the feed while the part is
// the latest, and each viewer writing it after the feed may have moved on
// (a viewer's goroutine, or one the fan-out handed the rest of a part to).
type part struct {
	frame   sdk.Frame
	arrived time.Time    // when the plugin got it
	head    []byte       // the part's header lines and the blank line
	refs    atomic.Int32 // holders of the frame; once 0, never held again
}

// hold takes a reference to p's frame for a write, unless p is already
// released (the feed replaced it and nobody was writing it).
func (p *part) hold() bool {
	for {
		n := p.refs.Load()
		if n <= 0 {
			return false
		}
		if p.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// drop gives back a reference taken by hold or publish.
func (p *part) drop() {
	if p.refs.Add(-1) == 0 {
		p.frame.Release()
	}
}

// staleFirst is how old the newest frame may be to greet a new viewer. An
// older one is left over from before nobody watched (camd sends no frames
// then): the viewer waits for the next, which its arrival asked for.
const staleFirst = 2 * time.Second

// Configure implements sdk.Output.
func (m *MJPEG) Configure(c sdk.Config) error {
	// The embedded sample is the defaults (a test checks it decodes).
	m.cfg = Config{}
	if err := sdk.DecodeConfig([]byte(sampleConfig), &m.cfg); err != nil {
		return err
	}
	errs := sdk.AsConfigErrors(sdk.DecodeConfig(c.Raw, &m.cfg))
	errs = append(errs, m.cfg.HTTPConfig.Check()...)
	if m.cfg.MaxViewers < 1 {
		errs = append(errs, sdk.Errorf("max_viewers", "must be at least 1"))
	}
	if m.cfg.WriteTimeout <= 0 {
		errs = append(errs, sdk.Errorf("write_timeout", "must be positive, e.g. 5s"))
	}
	m.log = c.Log
	feeds := map[string]*feed{}
	for _, cam := range c.Cameras {
		feeds[cam] = newFeed()
	}
	m.feeds.Store(&feeds)
	m.registerMetrics(c.Metrics)
	return errs.Err()
}

// ListenAddrs implements sdk.Listener.
func (m *MJPEG) ListenAddrs() []string { return []string{m.cfg.Listen} }

// Start implements sdk.Output.
func (m *MJPEG) Start(ctx context.Context) ([]string, error) {
	m.http = &sdk.HTTP{Config: m.cfg.HTTPConfig, MaxViewers: m.cfg.MaxViewers, Log: m.log}
	if err := m.http.Listen(ctx); err != nil {
		return nil, err
	}
	m.streams.start(ctx)
	m.http.Serve(m.Handler())
	return m.URLs(), nil
}

// URLs implements sdk.URLReporter: the page and each camera's stream.
func (m *MJPEG) URLs() []string {
	if m.http == nil || m.http.Addr() == nil {
		return nil
	}
	urls := []string{m.http.URL("/")}
	for _, cam := range m.cameraNames() {
		urls = append(urls, m.http.URL("/cameras/"+cam+"/stream.mjpg"))
	}
	return urls
}

// Stop implements sdk.Output. Viewers' streams end as it begins; it
// returns once their goroutines have.
func (m *MJPEG) Stop(ctx context.Context) error {
	m.streams.stop()
	return m.http.Shutdown(ctx)
}

// SetCameras implements sdk.CameraSetter. Viewers of a removed camera are
// disconnected; those of the other cameras are not touched.
func (m *MJPEG) SetCameras(cameras []string) error {
	m.setMu.Lock()
	defer m.setMu.Unlock()
	old := m.feedMap()
	feeds := make(map[string]*feed, len(cameras))
	for _, cam := range cameras {
		if fd, ok := old[cam]; ok {
			feeds[cam] = fd
		} else {
			feeds[cam] = newFeed()
		}
	}
	m.feeds.Store(&feeds)
	for cam, fd := range old {
		if _, kept := feeds[cam]; !kept {
			fd.remove()
		}
	}
	return nil
}

// feedMap returns the cameras' feeds, never to be modified: SetCameras
// replaces the map. Nil before Configure.
func (m *MJPEG) feedMap() map[string]*feed {
	if p := m.feeds.Load(); p != nil {
		return *p
	}
	return nil
}

func (m *MJPEG) feed(camera string) (*feed, bool) {
	fd, ok := m.feedMap()[camera]
	return fd, ok
}

// HandleFrame implements sdk.Output.
func (m *MJPEG) HandleFrame(f sdk.Frame) {
	fd, ok := m.feed(f.Camera)
	if !ok {
		return
	}
	ts := f.Captured.UnixMicro()
	state := "live"
	if f.Placeholder {
		state = "offline"
	}
	head := fmt.Appendf(nil, "Content-Type: image/jpeg\r\nContent-Length: %d\r\nX-Timestamp: %d.%06d\r\nX-Frame-Seq: %d\r\nX-Camera-State: %s\r\n\r\n",
		len(f.JPEG), ts/1e6, ts%1e6, f.Seq, state)
	fd.frames.Add(1)
	fd.publish(&part{frame: f, arrived: time.Now(), head: head})
}

// Handler returns the plugin's HTTP routes.
func (m *MJPEG) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", m.serveIndex)
	mux.HandleFunc("GET /cameras/{camera}/stream.mjpg", m.serveStream)
	return mux
}

// indexTmpl is the output's page: every camera's stream, in camd's look.
// Links are relative, so the page works under camd's /outputs/<name>/ too.
var indexTmpl = look.MustPage("index", `
{{define "title"}}MJPEG · camd{{end}}
{{define "nav"}}<span class="here">MJPEG</span>{{end}}
{{define "main"}}
<div class="grid">
{{range .Cameras}}<div class="tile" data-camera="{{.}}">
  <div class="view"><img src="cameras/{{.}}/stream.mjpg{{$.Query}}" alt="{{.}}"></div>
  <div class="body"><div class="title"><b>{{.}}</b><a class="small" href="cameras/{{.}}/stream.mjpg{{$.Query}}">stream.mjpg</a></div></div>
</div>
{{else}}<p class="muted">No cameras.</p>{{end}}
</div>
{{end}}
`, nil)

func (m *MJPEG) serveIndex(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	// A page opened with ?token= passes it on to its pictures.
	var query string
	if tok := r.URL.Query().Get("token"); tok != "" {
		query = "?" + url.Values{"token": {tok}}.Encode()
	}
	_ = indexTmpl.Execute(w, struct {
		Cameras []string
		Query   string
	}{m.cameraNames(), query})
}

func (m *MJPEG) cameraNames() []string { return slices.Sorted(maps.Keys(m.feedMap())) }

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
	for name, fd := range m.feedMap() {
		cams[name] = cameraStatus{Frames: fd.frames.Load(), Viewers: fd.viewers.Load(), Sent: fd.sent.Load(), Skipped: fd.skipped.Load()}
	}
	st := map[string]any{"stalled_dropped": m.stalled.Load(), "cameras": cams}
	if m.http != nil {
		hs := m.http.Stats()
		st["viewers"], st["refused"], st["http"] = hs.Viewers, hs.ViewersRefused+hs.ClientRefused, hs
	}
	return st
}

// Interface guards.
var (
	_ sdk.Output         = (*MJPEG)(nil)
	_ sdk.StatusReporter = (*MJPEG)(nil)
	_ sdk.Listener       = (*MJPEG)(nil)
	_ sdk.CameraSetter   = (*MJPEG)(nil)
	_ sdk.URLReporter    = (*MJPEG)(nil)
)
