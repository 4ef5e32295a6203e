package main

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/camd/camd/sdk"
)

//go:embed sample.yaml
var sampleConfig string

// Config is the output's config block.
type Config struct {
	sdk.HTTPConfig `yaml:",inline"` // listen, max_viewers_per_client (requests waiting for a frame)
	// StaleAfter is the age past which a plain GET no longer answers the
	// camera's newest frame but 503: never a stale 200.
	StaleAfter sdk.Duration `yaml:"stale_after"`
	Dir        string       `yaml:"dir"`      // timelapse root; one subfolder per camera. Empty: no timelapse
	Every      sdk.Duration `yaml:"every"`    // timelapse interval
	Keep       int          `yaml:"keep"`     // keep at most this many files per camera (0: no limit)
	MaxAge     sdk.Duration `yaml:"max_age"`  // delete files older than this (0: no limit)
	MinFree    sdk.ByteSize `yaml:"min_free"` // stop writing below this much free space
	Wait       sdk.Duration `yaml:"wait"`     // longest a request waits for a fresh enough frame
}

// Snapshot serves stills and writes the timelapse.
type Snapshot struct {
	cfg  Config
	log  *slog.Logger
	http *sdk.HTTP
	// cams maps camera names to cameras. SetCameras replaces the whole
	// map, so HandleFrame and requests read it without locking.
	cams atomic.Pointer[map[string]*camera]
	// freeSpace reports the bytes available under a path; a field so tests
	// can simulate a full disk.
	freeSpace func(path string) (uint64, error)
	// writeFile writes a still whole or not at all (writeAtomic); a field
	// so tests can make writes fail.
	writeFile func(dir, name string, data []byte) error

	mu      sync.Mutex      // serializes Start, SetCameras and Stop
	ctx     context.Context // from Start to Stop: the timelapse writers'
	cancel  context.CancelFunc
	stopped bool
	wg      sync.WaitGroup // the timelapse writers
	demand  *sdk.Demand    // stills and timelapses hold their cameras
}

// stillHold is how long a still request keeps its camera's frames coming,
// so the next stills are instant; wakeWait how long a still of a camera
// nobody wanted waits for its first fresh frame (an on_demand camera
// connecting).
const (
	stillHold = 30 * time.Second
	wakeWait  = 5 * time.Second
)

// camera is one camera's newest frames and timelapse state.
type camera struct {
	name string
	// real is the camera's newest frame; never a placeholder.
	real sdk.Latest[sdk.Frame]
	// placeholder is the newest placeholder camd drew while the camera is
	// offline; nil while it is live.
	placeholder atomic.Pointer[sdk.Frame]
	dir         string // its timelapse folder
	// removed ends when the camera leaves the output: requests waiting
	// for its frames answer, its timelapse stops.
	removed context.Context
	remove  context.CancelFunc

	served     atomic.Uint64
	written    atomic.Uint64
	skippedLow atomic.Uint64 // timelapse frames not written: disk below min_free
	writeErrs  atomic.Uint64
	lowDisk    atomic.Bool
}

func (s *Snapshot) newCamera(name string) *camera {
	c := &camera{name: name, dir: filepath.Join(s.cfg.Dir, name)}
	c.removed, c.remove = context.WithCancel(context.Background())
	return c
}

// state is the camera's state as stills report it (X-Camera-State):
// offline while camd draws placeholders for it or when its newest frame
// is older than stale_after, else live.
func (c *camera) state(staleAfter time.Duration) string {
	if f, ver := c.real.Get(); c.placeholder.Load() == nil && ver > 0 && fresh(f, staleAfter) {
		return "live"
	}
	return "offline"
}

// Configure implements sdk.Output.
func (s *Snapshot) Configure(c sdk.Config) error {
	s.demand = c.Demand
	// The embedded sample is the defaults (a test checks it decodes).
	s.cfg = Config{}
	if err := sdk.DecodeConfig([]byte(sampleConfig), &s.cfg); err != nil {
		return err
	}
	errs := sdk.AsConfigErrors(sdk.DecodeConfig(c.Raw, &s.cfg))
	errs = append(errs, s.cfg.HTTPConfig.Check()...)
	if s.cfg.Wait <= 0 {
		errs = append(errs, sdk.Errorf("wait", "must be positive, e.g. 5s"))
	}
	if s.cfg.StaleAfter <= 0 {
		errs = append(errs, sdk.Errorf("stale_after", "must be positive, e.g. 5s"))
	}
	if s.cfg.Dir == "" {
		for key, set := range map[string]bool{"every": s.cfg.Every != 0, "keep": s.cfg.Keep != 0, "max_age": s.cfg.MaxAge != 0} {
			if set {
				errs = append(errs, sdk.Errorf(key, "needs dir (where the timelapse goes)"))
			}
		}
	} else {
		if s.cfg.Every == 0 {
			s.cfg.Every = sdk.Duration(10 * time.Second)
		}
		if s.cfg.Every < sdk.Duration(10*time.Millisecond) {
			errs = append(errs, sdk.Errorf("every", "must be at least 10ms"))
		}
		if s.cfg.Keep < 0 {
			errs = append(errs, sdk.Errorf("keep", "must not be negative"))
		}
		if s.cfg.MaxAge < 0 {
			errs = append(errs, sdk.Errorf("max_age", "must not be negative"))
		}
		if err := checkWritableDir(s.cfg.Dir); err != nil {
			errs = append(errs, sdk.Errorf("dir", "%v", err))
		}
	}
	slices.SortFunc(errs, func(a, b *sdk.ConfigError) int { return strings.Compare(a.Key, b.Key) })
	s.log = c.Log
	if s.freeSpace == nil {
		s.freeSpace = statfsFree
	}
	if s.writeFile == nil {
		s.writeFile = writeAtomic
	}
	cams := map[string]*camera{}
	for _, name := range c.Cameras {
		cams[name] = s.newCamera(name)
	}
	s.cams.Store(&cams)
	s.registerMetrics(c.Metrics)
	return errs.Err()
}

// ListenAddrs implements sdk.Listener.
func (s *Snapshot) ListenAddrs() []string { return []string{s.cfg.Listen} }

// checkWritableDir checks that dir is (or can be created as) a directory
// this process can write to, without creating anything.
func checkWritableDir(dir string) error {
	p := dir
	for {
		fi, err := os.Stat(p)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("%s is not a directory", p)
			}
			if err := syscall.Access(p, 2 /* W_OK */); err != nil {
				return fmt.Errorf("%s is not writable: %v", p, err)
			}
			if readOnlyFS(p) {
				return fmt.Errorf("%s is on a read-only filesystem", p)
			}
			return nil
		}
		if errors.Is(err, syscall.ENOTDIR) {
			p = filepath.Dir(p) // a path component is a file: report that file
			continue
		}
		if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		parent := filepath.Dir(p)
		if parent == p {
			return err
		}
		p = parent
	}
}

func readOnlyFS(p string) bool {
	var st syscall.Statfs_t
	return syscall.Statfs(p, &st) == nil && st.Flags&1 /* ST_RDONLY */ != 0
}

func statfsFree(path string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// Start implements sdk.Output.
func (s *Snapshot) Start(ctx context.Context) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.http = &sdk.HTTP{Config: s.cfg.HTTPConfig, Log: s.log}
	if err := s.http.Listen(ctx); err != nil {
		return nil, err
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if s.cfg.Dir != "" {
		for _, c := range s.cameras() {
			if err := s.startTimelapse(c); err != nil {
				s.cancel()
				s.wg.Wait()
				return nil, errors.Join(err, s.http.Shutdown(ctx))
			}
		}
	}
	s.http.Serve(s.Handler())
	s.log.Info("serving stills", "addr", s.http.Addr().String(), "timelapse", s.cfg.Dir)
	return s.URLs(), nil
}

// URLs implements sdk.URLReporter: the page and each camera's still.
func (s *Snapshot) URLs() []string {
	if s.http == nil || s.http.Addr() == nil {
		return nil
	}
	urls := []string{s.http.URL("/")}
	for _, name := range s.names() {
		urls = append(urls, s.http.URL("/cameras/"+name+"/snapshot.jpg"))
	}
	return urls
}

// startTimelapse creates c's folder and starts its writer, which runs
// until Stop or until c is removed. Called with s.mu held.
func (s *Snapshot) startTimelapse(c *camera) error {
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return fmt.Errorf("timelapse dir of camera %q: %w", c.name, err)
	}
	if n := cleanTemp(c.dir); n > 0 {
		s.log.Warn("removed partial files left by a crash", "camera", c.name, "files", n)
	}
	ctx, cancel := context.WithCancel(s.ctx)
	stop := context.AfterFunc(c.removed, cancel)
	s.wg.Add(1)
	release := s.demand.Hold(c.name) // a timelapse wants every frame
	go func() {
		defer s.wg.Done()
		defer release()
		defer stop()
		defer cancel()
		s.timelapse(ctx, c)
	}()
	return nil
}

// Stop implements sdk.Output.
func (s *Snapshot) Stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	return s.http.Shutdown(ctx)
}

// SetCameras implements sdk.CameraSetter. A removed camera's waiting
// requests are answered 404 and its timelapse stops (its files stay); an
// added camera is served at once and gets a timelapse. The other cameras
// are not touched.
func (s *Snapshot) SetCameras(names []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.cameras()
	cams := make(map[string]*camera, len(names))
	var errs []error
	for _, name := range names {
		if c, ok := old[name]; ok {
			cams[name] = c
			continue
		}
		c := s.newCamera(name)
		if s.cfg.Dir != "" && s.ctx != nil && !s.stopped {
			// Stills are served even if the timelapse cannot be.
			if err := s.startTimelapse(c); err != nil {
				errs = append(errs, err)
			}
		}
		cams[name] = c
	}
	s.cams.Store(&cams)
	for name, c := range old {
		if _, kept := cams[name]; !kept {
			c.remove()
		}
	}
	return errors.Join(errs...)
}

// cameras returns the cameras, never to be modified: SetCameras replaces
// the map. Nil before Configure.
func (s *Snapshot) cameras() map[string]*camera {
	if p := s.cams.Load(); p != nil {
		return *p
	}
	return nil
}

func (s *Snapshot) camera(name string) (*camera, bool) {
	c, ok := s.cameras()[name]
	return c, ok
}

// HandleFrame implements sdk.Output. A placeholder is kept apart from the
// camera's frames: it is served only to ?placeholder=1 and never stored.
func (s *Snapshot) HandleFrame(f sdk.Frame) {
	c, ok := s.camera(f.Camera)
	if !ok {
		return
	}
	if f.Placeholder {
		c.placeholder.Store(&f)
		return
	}
	c.placeholder.Store(nil)
	c.real.Set(f)
}

func (s *Snapshot) names() []string { return slices.Sorted(maps.Keys(s.cameras())) }

// cameraStatus is one camera's counters in Status.
type cameraStatus struct {
	Served        uint64 `json:"served"`
	Written       uint64 `json:"timelapse_written"`
	SkippedLowDsk uint64 `json:"timelapse_skipped_low_disk"`
	WriteErrors   uint64 `json:"timelapse_write_errors"`
	LowDisk       bool   `json:"low_disk"`
	LastSeq       uint64 `json:"last_seq"`
	State         string `json:"state"` // live | offline, as X-Camera-State
}

// Status implements sdk.StatusReporter.
func (s *Snapshot) Status() any {
	out := map[string]cameraStatus{}
	for name, c := range s.cameras() {
		f, _ := c.real.Get()
		out[name] = cameraStatus{
			Served: c.served.Load(), Written: c.written.Load(), SkippedLowDsk: c.skippedLow.Load(),
			WriteErrors: c.writeErrs.Load(), LowDisk: c.lowDisk.Load(), LastSeq: f.Seq,
			State: c.state(time.Duration(s.cfg.StaleAfter)),
		}
	}
	st := map[string]any{"cameras": out}
	if s.http != nil {
		st["http"] = s.http.Stats()
	}
	return st
}

// Interface guards.
var (
	_ sdk.Output         = (*Snapshot)(nil)
	_ sdk.StatusReporter = (*Snapshot)(nil)
	_ sdk.Listener       = (*Snapshot)(nil)
	_ sdk.CameraSetter   = (*Snapshot)(nil)
	_ sdk.URLReporter    = (*Snapshot)(nil)
)

func unixString(t time.Time) string {
	us := t.UnixMicro()
	return strconv.FormatInt(us/1e6, 10) + "." + fmt.Sprintf("%06d", us%1e6)
}
