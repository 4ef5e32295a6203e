package main

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
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
	Listen  string       `yaml:"listen"`
	Dir     string       `yaml:"dir"`      // timelapse root; one subfolder per camera. Empty: no timelapse
	Every   sdk.Duration `yaml:"every"`    // timelapse interval
	Keep    int          `yaml:"keep"`     // keep at most this many files per camera (0: no limit)
	MaxAge  sdk.Duration `yaml:"max_age"`  // delete files older than this (0: no limit)
	MinFree sdk.ByteSize `yaml:"min_free"` // stop writing below this much free space
	Wait    sdk.Duration `yaml:"wait"`     // longest a request waits for a fresh enough frame
}

// Snapshot serves stills and writes the timelapse.
type Snapshot struct {
	cfg  Config
	log  *slog.Logger
	cams map[string]*camera
	// freeSpace reports the bytes available under a path; a field so tests
	// can simulate a full disk.
	freeSpace func(path string) (uint64, error)

	srv    *http.Server
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// camera is one camera's newest frame and timelapse state.
type camera struct {
	name   string
	latest sdk.Latest[sdk.Frame]
	dir    string // its timelapse folder

	served     atomic.Uint64
	written    atomic.Uint64
	skippedLow atomic.Uint64 // timelapse frames not written: disk below min_free
	writeErrs  atomic.Uint64
	lowDisk    atomic.Bool
}

// Configure implements sdk.Output.
func (s *Snapshot) Configure(c sdk.Config) error {
	s.cfg = Config{Listen: "127.0.0.1:8083", MinFree: 1 << 30, Wait: sdk.Duration(5 * time.Second)}
	errs := sdk.AsConfigErrors(sdk.DecodeConfig(c.Raw, &s.cfg))
	if _, _, err := net.SplitHostPort(s.cfg.Listen); err != nil {
		errs = append(errs, sdk.Errorf("listen", "want host:port, e.g. 127.0.0.1:8083"))
	}
	if s.cfg.Wait <= 0 {
		errs = append(errs, sdk.Errorf("wait", "must be positive, e.g. 5s"))
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
	s.cams = map[string]*camera{}
	for _, name := range c.Cameras {
		s.cams[name] = &camera{name: name, dir: filepath.Join(s.cfg.Dir, name)}
	}
	return errs.Err()
}

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
func (s *Snapshot) Start(context.Context) ([]string, error) {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	if s.cfg.Dir != "" {
		for _, c := range s.cams {
			if err := os.MkdirAll(c.dir, 0o755); err != nil {
				cancel()
				return nil, fmt.Errorf("timelapse dir: %w", err)
			}
			if n := cleanTemp(c.dir); n > 0 {
				s.log.Warn("removed partial files left by a crash", "camera", c.name, "files", n)
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.timelapse(ctx, c)
			}()
		}
	}
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		cancel()
		s.wg.Wait()
		return nil, err
	}
	s.srv = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       60 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("serve", "err", err)
		}
	}()
	base := "http://" + ln.Addr().String()
	urls := []string{base + "/"}
	for _, name := range s.names() {
		urls = append(urls, base+"/cameras/"+name+"/snapshot.jpg")
	}
	s.log.Info("listening", "addr", ln.Addr().String(), "timelapse", s.cfg.Dir)
	return urls, nil
}

// Stop implements sdk.Output.
func (s *Snapshot) Stop(ctx context.Context) error {
	if s.cancel == nil {
		return nil
	}
	s.cancel()
	s.wg.Wait()
	if s.srv != nil {
		return s.srv.Shutdown(ctx)
	}
	return nil
}

// HandleFrame implements sdk.Output.
func (s *Snapshot) HandleFrame(f sdk.Frame) {
	if c, ok := s.cams[f.Camera]; ok {
		c.latest.Set(f)
	}
}

func (s *Snapshot) names() []string { return slices.Sorted(maps.Keys(s.cams)) }

// cameraStatus is one camera's counters in Status.
type cameraStatus struct {
	Served        uint64 `json:"served"`
	Written       uint64 `json:"timelapse_written"`
	SkippedLowDsk uint64 `json:"timelapse_skipped_low_disk"`
	WriteErrors   uint64 `json:"timelapse_write_errors"`
	LowDisk       bool   `json:"low_disk"`
	LastSeq       uint64 `json:"last_seq"`
}

// Status implements sdk.StatusReporter.
func (s *Snapshot) Status() any {
	out := map[string]cameraStatus{}
	for name, c := range s.cams {
		f, _ := c.latest.Get()
		out[name] = cameraStatus{
			Served: c.served.Load(), Written: c.written.Load(), SkippedLowDsk: c.skippedLow.Load(),
			WriteErrors: c.writeErrs.Load(), LowDisk: c.lowDisk.Load(), LastSeq: f.Seq,
		}
	}
	return map[string]any{"cameras": out}
}

// Interface guards.
var (
	_ sdk.Output         = (*Snapshot)(nil)
	_ sdk.StatusReporter = (*Snapshot)(nil)
)

func unixString(t time.Time) string {
	us := t.UnixMicro()
	return strconv.FormatInt(us/1e6, 10) + "." + fmt.Sprintf("%06d", us%1e6)
}
