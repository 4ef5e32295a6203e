// Package daemon wires camd together: it builds the cameras, the router and
// the output plugins from a config, runs them, applies a changed config
// without disturbing what did not change, and serves the daemon's own HTTP
// API.
package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
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

	"github.com/camd/camd/device"
	"github.com/camd/camd/internal/config"
	"github.com/camd/camd/internal/pluginhost"
	"github.com/camd/camd/internal/redact"
	"github.com/camd/camd/internal/router"
	"github.com/camd/camd/sdk"
	"github.com/camd/camd/sdk/wire"
)

// Daemon is a running camd.
type Daemon struct {
	log      *slog.Logger
	level    *slog.LevelVar        // log_level; a reload changes it
	redactor *redact.Redactor      // the config's secrets; a reload changes them
	guard    atomic.Pointer[guard] // the API's host check and auth; a reload changes them
	router   *router.Router
	started  time.Time
	sockDir  string
	addr     chan string // the API's address, once it listens

	reloadMu sync.Mutex // one reload at a time; guards api and running
	api      *apiServer
	running  bool           // between launch and shutdown: reloads may apply
	bg       sync.WaitGroup // API listeners a reload retired, closing

	mu  sync.Mutex // guards what follows; Status reads it
	cfg *config.Config
	// configPath is cfg.Path made absolute at start (camd's directory
	// does not change), for /api/status.
	configPath string
	cameras    []*cameraRun // in config order
	outputs    []*outputRun
	reload     *ReloadStatus
}

// cameraRun is a running camera and what stops it.
type cameraRun struct {
	cfg   config.Camera
	cam   *device.Camera
	bytes atomic.Uint64 // of good frames, for /metrics
	stop  context.CancelFunc
	done  chan struct{}

	// For on_demand cameras: wake says the outputs' demand changed;
	// asleep is when the camera was last put to sleep (nil: awake).
	wake   chan struct{}
	asleep atomic.Pointer[time.Time]
}

// stats is the camera's Stats as camd reports them: an on_demand camera
// nobody wants is idle since it was put to sleep (asleep true), whatever
// its device loop last said.
func (r *cameraRun) stats() (s device.Stats, asleep bool) {
	s = r.cam.Stats()
	if t := r.asleep.Load(); t != nil {
		s.State, s.Since, s.Reason = device.StateIdle, *t, ""
		return s, true
	}
	return s, false
}

// outputRun is a running output plugin and what stops it.
type outputRun struct {
	spec pluginhost.Spec
	out  *pluginhost.Output
	stop context.CancelFunc
	done chan struct{}
}

// Options are what the daemon takes from its caller besides the config.
type Options struct {
	Log      *slog.Logger
	Level    *slog.LevelVar   // set from log_level; nil: a fixed level
	Redactor *redact.Redactor // fed the config's secrets; nil: none
}

// New returns a daemon for cfg. Nothing runs until Run.
func New(cfg *config.Config, opt Options) *Daemon {
	d := &Daemon{
		cfg: cfg, log: opt.Log, level: opt.Level, redactor: opt.Redactor,
		router: router.New(), addr: make(chan string, 1),
	}
	if d.level == nil {
		d.level = new(slog.LevelVar)
	}
	if d.redactor == nil {
		d.redactor = redact.New()
	}
	d.configPath = cfg.Path
	if abs, err := filepath.Abs(cfg.Path); err == nil {
		d.configPath = abs
	}
	d.applySettings(cfg)
	return d
}

// Addr returns the HTTP API's address once it listens.
func (d *Daemon) Addr() <-chan string { return d.addr }

// launchTimeout bounds how long camd waits for every output to start.
const launchTimeout = 30 * time.Second

// Run checks the config as `camd validate` does, starts every output and
// refuses to go on (returning every problem as config.Errors) if one cannot
// start; then it starts the cameras and serves until ctx ends. Then it stops
// the cameras, stops every plugin (no orphans), closes the HTTP API and
// returns nil.
func (d *Daemon) Run(ctx context.Context) error {
	d.started = time.Now()
	sockDir, err := socketDir()
	if err != nil {
		return fmt.Errorf("plugin socket directory: %w", err)
	}
	defer os.RemoveAll(sockDir)
	d.sockDir = sockDir
	cfg := d.cfg

	if errs := Check(ctx, cfg, d.log, nil); len(errs) > 0 {
		return errs
	}
	api, err := d.listenAPI(cfg)
	if err != nil {
		return config.Errors{cfg.ErrorAt("http.listen", err.Error())}
	}
	d.reloadMu.Lock()
	d.api = api
	d.reloadMu.Unlock()
	defer func() {
		d.reloadMu.Lock()
		d.running = false // a reload waiting for the lock finds camd stopping
		d.reloadMu.Unlock()
		d.stopAll()
		d.api.close()
		d.bg.Wait()
	}()

	// Outputs first, so they are subscribed before frames flow.
	var outs []*outputRun
	for i := range cfg.Outputs {
		spec, err := Spec(cfg, i)
		if err != nil {
			return config.Errors{cfg.ErrorAt(fmt.Sprintf("outputs[%d]", i), err.Error())}
		}
		outs = append(outs, d.startOutput(cfg, i, spec))
	}
	if errs := d.awaitLaunch(ctx, cfg, outs); len(errs) > 0 {
		return errs
	}
	for _, c := range cfg.Cameras {
		d.startCamera(c, 0)
	}
	d.reloadMu.Lock()
	d.running = true
	d.reloadMu.Unlock()
	d.addr <- api.addr
	d.log.Info("camd running", "api", api.url+"/", "cameras", len(cfg.Cameras), "outputs", len(cfg.Outputs))

	watchCtx, stopWatch := context.WithCancel(ctx)
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		if err := d.watch(watchCtx, cfg.Path); err != nil {
			d.log.Warn("cannot watch the config file; reload with SIGHUP or camd reload", "err", err)
		}
	}()
	defer func() { stopWatch(); <-watchDone }()

	<-ctx.Done()
	d.log.Info("shutting down")
	return nil
}

// awaitLaunch waits for each output's first start and returns the errors
// of those that failed, placed in the file.
func (d *Daemon) awaitLaunch(ctx context.Context, cfg *config.Config, outs []*outputRun) config.Errors {
	var errs config.Errors
	expired, stop := launchDeadline()
	defer stop()
	for i, o := range outs {
		err := launched(ctx, o, expired)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, errLaunchTimeout):
			errs = append(errs, cfg.ErrorAt(fmt.Sprintf("outputs[%d]", i), err.Error()))
		case err != nil:
			errs = append(errs, outputErrors(cfg, i, err)...)
		}
	}
	return errs
}

// errLaunchTimeout: an output's first start took longer than launchTimeout.
var errLaunchTimeout = errors.New("did not start within " + launchTimeout.String())

// launchDeadline returns a channel closed once launchTimeout has passed
// (closed, so every output waited on after it sees it), and a stop.
func launchDeadline() (<-chan struct{}, func() bool) {
	ch := make(chan struct{})
	return ch, time.AfterFunc(launchTimeout, func() { close(ch) }).Stop
}

// launched waits for r's first start until expired is closed: nil once
// its plugin serves, else why not.
func launched(ctx context.Context, r *outputRun, expired <-chan struct{}) error {
	select {
	case err := <-r.out.Launched():
		return err
	case <-ctx.Done():
		return fmt.Errorf("not known to have started: %w", ctx.Err())
	case <-expired:
		return errLaunchTimeout
	}
}

// stopAll stops the cameras, then the outputs, and waits for them.
func (d *Daemon) stopAll() {
	d.mu.Lock()
	cams, outs := d.cameras, d.outputs
	d.cameras, d.outputs = nil, nil
	d.mu.Unlock()
	for _, c := range cams {
		c.stop()
	}
	for _, c := range cams {
		<-c.done
	}
	for _, o := range outs {
		o.stop()
	}
	for _, o := range outs {
		<-o.done
	}
}

// startCamera starts c and adds it to the running cameras, its frames
// numbered after seq (the last of the camera it replaces, or 0).
func (d *Daemon) startCamera(c config.Camera, seq uint64) *cameraRun {
	sc, _ := c.Source.Device() // checked by config.Load
	src, err := device.New(sc)
	if err != nil { // config.Load accepted it: a bug, not a user error
		panic(fmt.Sprintf("camera %q: %v", c.Name, err))
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &cameraRun{
		cfg:  c,
		cam:  &device.Camera{Name: c.Name, Source: src, Log: d.log, OfflineAfter: time.Duration(c.OfflineAfter)},
		stop: cancel, done: make(chan struct{}), wake: make(chan struct{}, 1),
	}
	r.cam.ContinueAfter(seq)
	emit := func(f wire.Frame) bool {
		if !f.Placeholder {
			r.bytes.Add(uint64(len(f.JPEG)))
		}
		return d.router.Publish(f)
	}
	go func() {
		defer close(r.done)
		if c.OnDemand {
			d.runOnDemand(ctx, r, emit)
			return
		}
		r.cam.Run(ctx, emit)
	}()
	d.mu.Lock()
	d.cameras = append(d.cameras, r)
	d.mu.Unlock()
	return r
}

// runOnDemand runs an on_demand camera while some output wants it and for
// its linger after the last one stopped, until ctx ends.
func (d *Daemon) runOnDemand(ctx context.Context, r *cameraRun, emit func(wire.Frame) bool) {
	linger := time.Duration(r.cfg.Linger)
	for {
		now := time.Now()
		r.asleep.Store(&now)
		for !d.wanted(r.cfg.Name) { // asleep: no connection to the device
			select {
			case <-ctx.Done():
				return
			case <-r.wake:
			}
		}
		r.asleep.Store(nil)
		d.log.Info("camera wanted: connecting", "camera", r.cfg.Name)
		runCtx, stopRun := context.WithCancel(ctx)
		ran := make(chan struct{})
		go func() {
			defer close(ran)
			r.cam.Run(runCtx, emit)
		}()
		// Awake until nobody wanted it for linger.
		var idle *time.Timer // runs while nobody wants the camera
		for awake := true; awake; {
			if d.wanted(r.cfg.Name) {
				if idle != nil {
					idle.Stop()
					idle = nil
				}
			} else if idle == nil {
				idle = time.NewTimer(linger)
			}
			var fire <-chan time.Time
			if idle != nil {
				fire = idle.C
			}
			select {
			case <-ctx.Done():
				stopRun()
				<-ran
				return
			case <-r.wake:
			case <-fire:
				idle = nil
				awake = d.wanted(r.cfg.Name) // wanted again meanwhile: stay
			}
		}
		stopRun()
		<-ran
		d.log.Info("camera unwanted: disconnected until a viewer comes", "camera", r.cfg.Name, "linger", linger)
	}
}

// wanted reports whether an output that receives camera wants its frames.
func (d *Daemon) wanted(camera string) bool {
	d.mu.Lock()
	outs := slices.Clone(d.outputs)
	d.mu.Unlock()
	for _, o := range outs {
		if slices.Contains(o.out.Cameras(), camera) && o.out.Wants(camera) {
			return true
		}
	}
	return false
}

// demandChanged wakes the on_demand cameras to look again, and has the
// cameras an output just began to want send it a picture now: a viewer
// arriving while its camera is offline sees the placeholder at once.
func (d *Daemon) demandChanged(gained []string) {
	d.mu.Lock()
	cams := slices.Clone(d.cameras)
	d.mu.Unlock()
	for _, c := range cams {
		if slices.Contains(gained, c.cfg.Name) {
			c.cam.Refresh()
		}
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

// startOutput starts output i of cfg, subscribed to its cameras.
func (d *Daemon) startOutput(cfg *config.Config, i int, spec pluginhost.Spec) *outputRun {
	out := pluginhost.New(spec, d.log)
	out.OnDemand = d.demandChanged
	name := spec.Name
	out.OnConfigError = func(errs sdk.ConfigErrors) {
		for _, e := range errs {
			d.log.Error("output refused its config; it stays off until the config is fixed",
				"output", name, "err", cfg.PluginError(i, e.Key, e.Message).Error())
		}
	}
	for _, cam := range spec.Cameras {
		d.router.Subscribe(cam, out)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &outputRun{spec: spec, out: out, stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		out.Run(ctx, d.sockDir)
	}()
	d.mu.Lock()
	d.outputs = append(d.outputs, r)
	d.mu.Unlock()
	return r
}

// stopOutput unsubscribes and stops o and waits for it.
func (d *Daemon) stopOutput(o *outputRun) {
	for _, cam := range o.out.Cameras() {
		d.router.Unsubscribe(cam, o.out)
	}
	o.stop()
	<-o.done
	d.mu.Lock()
	d.outputs = slices.DeleteFunc(d.outputs, func(x *outputRun) bool { return x == o })
	d.mu.Unlock()
}

// stopCamera stops c and waits for it.
func (d *Daemon) stopCamera(c *cameraRun) {
	c.stop()
	<-c.done
	d.mu.Lock()
	d.cameras = slices.DeleteFunc(d.cameras, func(x *cameraRun) bool { return x == c })
	d.mu.Unlock()
}

// applySettings applies the settings that take effect at once: the log
// level and the secrets kept out of logs.
func (d *Daemon) applySettings(cfg *config.Config) {
	var l slog.Level
	_ = l.UnmarshalText([]byte(cfg.LogLevel))
	d.level.Set(l)
	d.redactor.SetSecrets(cfg.Secrets()...)
	d.guard.Store(newGuard(cfg, d))
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
		Cameras: o.Cameras, ConfigYAML: raw, AutoMTLS: cfg.PluginAutoMTLS, Security: cfg.Security(i),
		MinBackoff: time.Duration(o.Restart.Backoff), MaxBackoff: time.Duration(o.Restart.MaxBackoff),
		Env: pluginEnv(os.Environ(), cfg.Secrets()),
	}, nil
}

// pluginEnv is camd's environment without the variables that hold one of
// its secrets (CAMD_ADMIN_TOKEN=… for a token: ${CAMD_ADMIN_TOKEN}):
// plugins get hashes of the credentials, and the values their own config
// block needs, expanded, in it; not camd's secrets.
func pluginEnv(env, secrets []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		_, v, _ := strings.Cut(kv, "=")
		if v == "" || !slices.Contains(secrets, v) {
			out = append(out, kv)
		}
	}
	return out
}

// outputErrors places an error from starting or validating output i in
// the file: config errors at their keys, a bad binary at plugin/command/
// sha256, anything else at the output.
func outputErrors(cfg *config.Config, i int, err error) config.Errors {
	var ce *pluginhost.ConfigError
	if errors.As(err, &ce) {
		var errs config.Errors
		for _, e := range ce.Errors {
			errs = append(errs, cfg.PluginError(i, e.Key, e.Message))
		}
		return errs
	}
	o := cfg.Outputs[i]
	key := fmt.Sprintf("outputs[%d]", i)
	if errors.Is(err, pluginhost.ErrBinary) {
		switch {
		case strings.Contains(err.Error(), "sha256") && o.SHA256 != "":
			key += ".sha256"
		case o.Plugin != "":
			key += ".plugin"
		default:
			key += ".command"
		}
	}
	return config.Errors{cfg.ErrorAt(key, fmt.Sprintf("output %q: %v", o.Name, err))}
}

// apiServer is the daemon's HTTP listener.
type apiServer struct {
	listen string // as configured
	addr   string // as bound
	url    string // http(s)://addr
	srv    *http.Server
	ln     net.Listener
	done   chan struct{}
}

func (d *Daemon) listenAPI(cfg *config.Config) (*apiServer, error) {
	listen := cfg.HTTP.Listen
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	scheme := "http"
	if sec := cfg.Security(-1); sec.TLSCert != "" {
		tc, err := sdk.TLSConfig(sec.TLSCert, sec.TLSKey)
		if err != nil {
			ln.Close()
			return nil, err
		}
		ln, scheme = tls.NewListener(ln, tc), "https"
	}
	a := &apiServer{
		listen: listen, addr: ln.Addr().String(), url: scheme + "://" + ln.Addr().String(), ln: ln, done: make(chan struct{}),
		srv: &http.Server{Handler: d.secure(d.handler()), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 60 * time.Second},
	}
	go func() {
		defer close(a.done)
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			d.log.Error("http", "err", err)
		}
	}()
	return a, nil
}

// stopAccepting closes the listener, so its address can be bound again;
// requests under way go on until close.
func (a *apiServer) stopAccepting() { a.ln.Close() }

// close stops the listener, gives requests 2 s to finish, then cuts the
// rest (streams through /outputs/ never finish by themselves).
func (a *apiServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if a.srv.Shutdown(ctx) != nil {
		_ = a.srv.Close()
	}
	<-a.done
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
