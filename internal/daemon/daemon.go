// Package daemon wires camd together: it builds the cameras, the router and
// the output plugins from a config, runs them, and serves the daemon's own
// HTTP API.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/camd/camd/device"
	"github.com/camd/camd/internal/config"
	"github.com/camd/camd/internal/pluginhost"
	"github.com/camd/camd/internal/router"
	"github.com/camd/camd/sdk"
)

// Daemon is a running camd.
type Daemon struct {
	cfg     *config.Config
	log     *slog.Logger
	router  *router.Router
	cameras []*device.Camera
	outputs []*pluginhost.Output
	started time.Time

	// Addr is the address the HTTP API listens on, once Run has started it.
	addr chan string
}

// New builds a daemon from cfg. Nothing runs until Run.
func New(cfg *config.Config, log *slog.Logger) (*Daemon, error) {
	d := &Daemon{cfg: cfg, log: log, router: router.New(), addr: make(chan string, 1)}
	for _, c := range cfg.Cameras {
		sc, err := c.Source.Device()
		if err != nil {
			return nil, fmt.Errorf("camera %q: %w", c.Name, err)
		}
		src, err := device.New(sc)
		if err != nil {
			return nil, fmt.Errorf("camera %q: %w", c.Name, err)
		}
		d.cameras = append(d.cameras, &device.Camera{Name: c.Name, Source: src, Log: log, OfflineAfter: time.Duration(c.OfflineAfter)})
	}
	for i, o := range cfg.Outputs {
		spec, err := Spec(cfg, i)
		if err != nil {
			return nil, err
		}
		out := pluginhost.New(spec, log)
		out.OnConfigError = func(errs sdk.ConfigErrors) {
			for _, e := range errs {
				log.Error("output refused its config; it stays off until the config is fixed",
					"output", o.Name, "err", cfg.PluginError(i, e.Key, e.Message).Error())
			}
		}
		d.outputs = append(d.outputs, out)
		for _, cam := range out.Cameras() {
			d.router.Subscribe(cam, out)
		}
	}
	return d, nil
}

// Spec returns the plugin spec of output i of cfg.
func Spec(cfg *config.Config, i int) (pluginhost.Spec, error) {
	o := cfg.Outputs[i]
	raw, err := cfg.OutputConfigYAML(i)
	if err != nil {
		return pluginhost.Spec{}, fmt.Errorf("output %q: config: %w", o.Name, err)
	}
	name := o.Plugin
	if name == "" {
		name = filepath.Base(o.Command)
	}
	return pluginhost.Spec{
		Name: o.Name, Plugin: name, Path: cfg.PluginPath(o), SHA256: o.SHA256,
		Cameras: o.Cameras, ConfigYAML: raw, AutoMTLS: cfg.PluginAutoMTLS,
		MinBackoff: time.Duration(o.Restart.Backoff), MaxBackoff: time.Duration(o.Restart.MaxBackoff),
	}, nil
}

// Addr returns the HTTP API's address once it listens.
func (d *Daemon) Addr() <-chan string { return d.addr }

// Run runs everything until ctx ends, then stops the cameras, stops every
// plugin (no orphans), closes the HTTP API and returns.
func (d *Daemon) Run(ctx context.Context) error {
	d.started = time.Now()
	sockDir, err := socketDir()
	if err != nil {
		return fmt.Errorf("plugin socket directory: %w", err)
	}
	defer os.RemoveAll(sockDir)

	ln, err := net.Listen("tcp", d.cfg.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("http.listen: %w", err)
	}
	srv := &http.Server{Handler: d.handler(), ReadHeaderTimeout: 5 * time.Second}
	httpDone := make(chan struct{})
	go func() {
		defer close(httpDone)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("http", "err", err)
		}
	}()
	d.addr <- ln.Addr().String()
	d.log.Info("camd running", "api", "http://"+ln.Addr().String()+"/", "cameras", len(d.cameras), "outputs", len(d.outputs))

	var wg sync.WaitGroup
	// Outputs first, so their mailboxes exist before frames flow; they
	// start in parallel.
	outCtx, stopOutputs := context.WithCancel(context.Background())
	for _, o := range d.outputs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o.Run(outCtx, sockDir)
		}()
	}
	camCtx, stopCameras := context.WithCancel(ctx)
	var camWG sync.WaitGroup
	for _, c := range d.cameras {
		camWG.Add(1)
		go func() {
			defer camWG.Done()
			c.Run(camCtx, d.router.Publish)
		}()
	}

	<-ctx.Done()
	d.log.Info("shutting down")
	stopCameras()
	camWG.Wait()
	stopOutputs()
	wg.Wait()
	shutCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutCtx)
	<-httpDone
	return nil
}

// socketDir makes a private (0700) directory for this run's plugin
// sockets, under a per-user base, and removes leftovers of camd runs that
// died without cleaning up (a SIGKILLed plugin leaves its socket behind).
func socketDir() (string, error) {
	base := filepath.Join(os.TempDir(), "camd-"+strconv.Itoa(os.Getuid()))
	if err := os.MkdirAll(base, 0o700); err != nil {
		return "", err
	}
	if err := os.Chmod(base, 0o700); err != nil {
		return "", err
	}
	entries, _ := os.ReadDir(base)
	for _, e := range entries {
		pid, err := strconv.Atoi(strings.TrimPrefix(e.Name(), "run-"))
		if err != nil || !strings.HasPrefix(e.Name(), "run-") {
			continue
		}
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			os.RemoveAll(filepath.Join(base, e.Name()))
		}
	}
	dir := filepath.Join(base, "run-"+strconv.Itoa(os.Getpid()))
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	return dir, os.Mkdir(dir, 0o700)
}
