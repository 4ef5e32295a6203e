// Package pluginhost runs output plugins: it starts each as a child process
// with go-plugin, configures it, streams it frames with one frame per
// camera in flight, and restarts it with backoff when it dies, while the
// cameras and the other outputs carry on.
package pluginhost

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/camd/camd/internal/router"
	pb "github.com/camd/camd/proto/outputv1"
	"github.com/camd/camd/sdk"
	"github.com/camd/camd/sdk/wire"
)

// Spec describes one output: which plugin binary to run and how.
type Spec struct {
	Name       string       // the output's name
	Plugin     string       // the plugin's name, for status ("mjpeg"), or the command
	Path       string       // the plugin binary
	SHA256     string       // optional pin of the binary's hash
	Cameras    []string     // cameras it receives
	ConfigYAML []byte       // its config block
	Security   sdk.Security // who may use it
	AutoMTLS   bool
	SocketDir  string // where go-plugin puts the plugin's unix socket
	// Env is the plugin's environment (before go-plugin's own
	// variables); nil: camd's.
	Env []string

	MinBackoff, MaxBackoff time.Duration // restart backoff; zero: 250ms and 30s
	// AckTimeout is how long a frame may go unacknowledged before the
	// plugin counts as hung and is restarted; zero: 30s.
	AckTimeout time.Duration
}

// Output states.
const (
	StateStarting = "starting"
	StateRunning  = "running"
	StateBackoff  = "restarting" // it died; waiting to start it again
	StateFailed   = "failed"     // its config was refused; not retried
	StateStopped  = "stopped"
)

// ErrConfig is wrapped by errors a plugin reported about its config.
var ErrConfig = errors.New("plugin refused its config")

// ConfigError is returned when the plugin refuses its config block.
type ConfigError struct {
	Errors sdk.ConfigErrors
}

func (e *ConfigError) Error() string { return e.Errors.Error() }
func (e *ConfigError) Unwrap() error { return ErrConfig }

// Output supervises one output plugin. It is a router.Sink.
type Output struct {
	spec Spec
	log  *slog.Logger
	mb   *router.Mailbox

	// OnConfigError, if set, is called once with the plugin's config errors
	// before the output is marked failed (the daemon maps them to file:line).
	OnConfigError func(sdk.ConfigErrors)

	launched chan error // the first start's outcome, once

	// direct is the running plugin's shared-memory link, when it has one:
	// frames are then sent from the goroutine that offers them (or that
	// reads the ack freeing their camera), with no goroutine between.
	direct atomic.Pointer[directLink]

	// wanted is the cameras the plugin wants frames of (see sdk.Demand);
	// nil while it wants all of them, as plugins that never say do. No
	// camera while no plugin process has taken its config: an output
	// starting, crashing or failed keeps no on_demand camera awake.
	wanted atomic.Pointer[map[string]bool]
	// OnDemand, if set, is called after the plugin's demand changed,
	// with the cameras it wants now and did not before: they owe it a
	// picture now rather than at their next frame (an offline camera's
	// next placeholder is up to a second away).
	OnDemand func(gained []string)

	mu          sync.Mutex
	cameras     []string // spec.Cameras, as changed by SetCameras
	state       string
	pid         int
	version     string
	restarts    int
	nextRestart time.Time
	urls        []string
	listen      []string // addresses the plugin listens on
	lastErr     string
	client      pb.OutputClient
}

// New returns a supervisor for spec. Call Run to start it.
func New(spec Spec, log *slog.Logger) *Output {
	o := &Output{
		spec: spec, log: log.With("output", spec.Name), mb: router.NewMailbox(), state: StateStarting,
		cameras: spec.Cameras, launched: make(chan error, 1),
	}
	o.wanted.Store(&map[string]bool{})
	return o
}

// Launched delivers the outcome of the first start, once: nil when the
// plugin took its config and serves, else why not. camd refuses to run
// with an output that cannot start at all.
func (o *Output) Launched() <-chan error { return o.launched }

func (o *Output) launchResult(err error) {
	select {
	case o.launched <- err:
	default:
	}
}

// directLink is a running plugin's shared-memory link while frames are
// sent on it.
type directLink struct {
	*shmLink
	waiting chan struct{} // a frame waits for an ack: read acks now
	failed  chan error    // the link broke
}

// Wants reports whether the plugin wants camera's frames now.
func (o *Output) Wants(camera string) bool {
	w := o.wanted.Load()
	return w == nil || (*w)[camera]
}

// setDemand records what the plugin wants: cameras, or all when all.
func (o *Output) setDemand(cameras []string, all bool) {
	var before *map[string]bool
	if all {
		before = o.wanted.Swap(nil)
	} else {
		w := make(map[string]bool, len(cameras))
		for _, c := range cameras {
			w[c] = true
		}
		before = o.wanted.Swap(&w)
		o.mb.Forget(o.Wants)
	}
	if o.OnDemand == nil {
		return
	}
	var gained []string
	for _, c := range o.Cameras() {
		if o.Wants(c) && before != nil && !(*before)[c] {
			gained = append(gained, c)
		}
	}
	o.OnDemand(gained)
}

// Offer implements router.Sink. Frames of cameras the plugin does not
// want now are not sent: an output nobody uses costs nothing. On the
// shared-memory link a frame the plugin can take now is copied there at
// once, and not kept; one that waits for an ack is.
func (o *Output) Offer(f sdk.Frame) (kept bool) {
	if !o.Wants(f.Camera) {
		return false
	}
	l := o.direct.Load()
	if l == nil {
		return o.mb.Offer(f)
	}
	if err := l.drain(o.ack(l)); err != nil {
		l.fail(err)
		return false
	}
	f, ok := o.mb.OfferTake(f)
	if !ok {
		select { // it waits: have the acks read as they come
		case l.waiting <- struct{}{}:
		default:
		}
		return true
	}
	if err := l.send(f); err != nil {
		l.fail(err)
	}
	return false
}

// ack returns what an ack on l does: free the camera and send its waiting
// frame.
func (o *Output) ack(l *directLink) func(camera string, seq uint64) {
	return func(camera string, seq uint64) {
		if f, ok := o.mb.AckTake(camera, seq); ok {
			if err := l.send(f); err != nil {
				l.fail(err)
			}
		}
	}
}

func (l *directLink) fail(err error) {
	select {
	case l.failed <- err:
	default:
	}
}

// Name returns the output's name.
func (o *Output) Name() string { return o.spec.Name }

// Listen returns the addresses the plugin listened on when it last
// started.
func (o *Output) Listen() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.listen
}

// URLs returns the output's state and the URLs the plugin serves,
// without asking the plugin (Status does): cheap enough for every request
// camd proxies to it.
func (o *Output) URLs() (state string, urls []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.state, o.urls
}

// Spec returns the output's spec, with its current cameras.
func (o *Output) Spec() Spec {
	o.mu.Lock() // SetCameras changes spec.Cameras
	defer o.mu.Unlock()
	return o.spec
}

// Cameras returns the cameras the output receives.
func (o *Output) Cameras() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.cameras
}

// ErrCamerasUnsupported is returned by SetCameras for a plugin that cannot
// change its cameras while running; it has to be restarted instead.
var ErrCamerasUnsupported = errors.New("plugin cannot change cameras while running")

// SetCameras changes the cameras of the running plugin without restarting
// it. The caller stops routing removed cameras to o before, and routes
// added ones after.
func (o *Output) SetCameras(ctx context.Context, cameras []string) error {
	o.mu.Lock()
	client := o.client
	o.mu.Unlock()
	if client == nil {
		return errors.New("plugin is not running")
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := client.SetCameras(ctx, &pb.SetCamerasRequest{Cameras: cameras})
	if err != nil {
		if status.Code(err) == codes.Unimplemented {
			return ErrCamerasUnsupported
		}
		return plain(err)
	}
	o.mu.Lock()
	if len(resp.Urls) > 0 {
		o.urls = resp.Urls
	}
	removed := slices.DeleteFunc(slices.Clone(o.cameras), func(c string) bool { return slices.Contains(cameras, c) })
	o.cameras = slices.Clone(cameras)
	o.spec.Cameras = o.cameras // a restart configures the plugin with the new list
	o.mu.Unlock()
	for _, c := range removed {
		o.mb.Remove(c)
	}
	return nil
}

// Restart backoff: from Spec.MinBackoff doubling to Spec.MaxBackoff; a
// plugin that stayed up for healthyAfter starts again from MinBackoff.
const (
	healthyAfter = 10 * time.Second
	// ackTimeout: a plugin that holds a frame longer than this is hung and
	// is restarted (Spec.AckTimeout).
	ackTimeout = 30 * time.Second
)

// Run starts the plugin and keeps it running until ctx ends; then it stops
// the plugin (gracefully, then by force) and returns. The plugin's socket
// goes in socketDir (empty: go-plugin's default).
func (o *Output) Run(ctx context.Context, socketDir string) {
	o.spec.SocketDir = socketDir
	minBackoff, maxBackoff := o.spec.MinBackoff, o.spec.MaxBackoff
	if minBackoff <= 0 {
		minBackoff = 250 * time.Millisecond
	}
	if maxBackoff < minBackoff {
		maxBackoff = max(minBackoff, 30*time.Second)
	}
	backoff := minBackoff
	for {
		var running time.Time // when the plugin took its config
		err := o.runOnce(ctx, func() {
			running = time.Now()
			o.launchResult(nil)
		})
		if ctx.Err() != nil {
			o.launchResult(ctx.Err())
			o.setState(StateStopped, "")
			return
		}
		o.launchResult(err)
		var ce *ConfigError
		if errors.As(err, &ce) {
			o.setState(StateFailed, err.Error())
			if o.OnConfigError != nil {
				o.OnConfigError(ce.Errors)
			}
			<-ctx.Done()
			o.setState(StateStopped, "")
			return
		}
		if !running.IsZero() && time.Since(running) > healthyAfter {
			backoff = minBackoff
		}
		o.mu.Lock()
		o.restarts++
		o.nextRestart = time.Now().Add(backoff)
		o.mu.Unlock()
		o.setState(StateBackoff, err.Error())
		o.log.Error("output plugin stopped; restarting", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			o.setState(StateStopped, "")
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

func (o *Output) setState(s, lastErr string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.state = s
	if lastErr != "" {
		o.lastErr = lastErr
	}
	if s != StateRunning {
		o.client = nil
		o.pid = 0
	}
	if s != StateBackoff {
		o.nextRestart = time.Time{}
	}
}

// runOnce runs one plugin process until it fails or ctx ends; ready is
// called once the plugin took its config and serves.
func (o *Output) runOnce(ctx context.Context, ready func()) error {
	o.setState(StateStarting, "")
	o.mu.Lock()
	spec := o.spec
	o.mu.Unlock()
	p, err := start(spec, o.log)
	if err != nil {
		return err
	}
	defer p.kill()

	resp, info, err := configure(ctx, p.out, spec, false)
	if err != nil {
		return err
	}
	// A new process: it wants what it says, from nothing if it says;
	// once it is gone, nothing.
	o.setDemand(nil, !resp.OnDemand)
	defer o.setDemand(nil, false)
	o.mu.Lock()
	o.state, o.urls, o.client, o.pid, o.version = StateRunning, resp.Urls, p.out, p.pid(), info.Version
	o.listen = resp.Listen
	o.mu.Unlock()
	msg := "output ready"
	if len(resp.Urls) > 0 {
		msg += "; open " + strings.Join(resp.Urls, " ")
	}
	o.log.Info(msg, "plugin", spec.Plugin, "version", info.Version, "pid", p.pid())
	ready()
	return o.stream(ctx, p)
}

// stream sends frames until the stream fails or ctx ends. On ctx end it
// closes the stream so the plugin sees a clean end before it is killed.
// Frames go through shared memory when the plugin took it, else over the
// gRPC stream, which stays open either way for what the plugin says back.
func (o *Output) stream(ctx context.Context, p *proc) error {
	sctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := p.out.Frames(sctx)
	if err != nil {
		return fmt.Errorf("open frame stream: %w", err)
	}
	o.mb.Reset()

	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // ends Recv before the wait
	errc := make(chan error, 3)
	wg.Add(1)
	go func() { // acks and the rest of what the plugin says
		defer wg.Done()
		for {
			r, err := stream.Recv()
			if err != nil {
				errc <- fmt.Errorf("frame stream: %w", err)
				return
			}
			if r.AckCamera != "" {
				o.mb.Ack(r.AckCamera, r.AckSeq)
			}
			if r.Demand != nil {
				o.setDemand(r.Demand.Cameras, false)
			}
		}
	}()
	sendCtx, stopSend := context.WithCancel(ctx)
	defer stopSend()
	var drain func()
	var sendClosed chan struct{} // frames over gRPC: closed once sending is
	if p.shm != nil {
		// Frames go out from Offer and from whoever reads the ack that
		// frees their camera; a frame offered before the link was up is
		// sent now.
		l := &directLink{shmLink: p.shm, waiting: make(chan struct{}, 1), failed: make(chan error, 1)}
		o.direct.Store(l)
		defer l.sock.Close() // ends waitAcks; defers run last first
		defer o.direct.Store(nil)
		wg.Add(2)
		go func() {
			defer wg.Done()
			if err := l.waitAcks(sendCtx, l.waiting, o.mb.Waiting, o.ack(l)); err != nil {
				errc <- err
			}
		}()
		go func() {
			defer wg.Done()
			select {
			case err := <-l.failed:
				errc <- err
			case <-sendCtx.Done():
			}
		}()
		for {
			f, ok := o.mb.TryNext()
			if !ok {
				break
			}
			if err := l.send(f); err != nil {
				return err
			}
		}
		drain = func() {
			if err := l.drain(o.ack(l)); err != nil {
				l.fail(err)
			}
		}
	} else {
		// The frames goroutine owns the sending side: gRPC forbids
		// CloseSend beside a SendMsg, so it closes it when told to stop.
		sendClosed = make(chan struct{})
		wg.Add(1)
		go func() { // frames
			defer wg.Done()
			defer close(sendClosed)
			for {
				f, err := o.mb.Next(sendCtx)
				if err != nil {
					_ = stream.CloseSend()
					return
				}
				if err := stream.Send(&pb.FramesRequest{Frame: wire.FrameToProto(f)}); err != nil {
					// The real status comes from the reader.
					return
				}
			}
		}()
	}
	defer stopSend() // before the socket closes and wg waits

	hungAfter := o.spec.AckTimeout
	if hungAfter <= 0 {
		hungAfter = ackTimeout
	}
	watch := time.NewTicker(min(time.Second, hungAfter/2))
	defer watch.Stop()
	for {
		select {
		case err := <-errc:
			return err
		case <-ctx.Done():
			stopSend()
			if sendClosed == nil {
				_ = stream.CloseSend()
			} else {
				select { // a Send the plugin does not take ends with the stream
				case <-sendClosed:
				case <-time.After(time.Second):
				}
			}
			select { // give the plugin a moment to finish the last frame
			case <-errc:
			case <-time.After(time.Second):
			}
			return ctx.Err()
		case now := <-watch.C:
			if d := o.mb.OldestInFlight(now); d > hungAfter {
				return fmt.Errorf("plugin hung: frame unacknowledged for %s", d.Round(time.Second))
			}
			if drain != nil { // acks that came while no frame did
				drain()
			}
		}
	}
}

// proc is a started plugin process.
type proc struct {
	cmd            *exec.Cmd
	client         *plugin.Client
	out            pb.OutputClient
	shm            *shmLink // nil: frames over gRPC
	stdout, stderr *lineWriter
}

func (p *proc) pid() int {
	if rc := p.client.ReattachConfig(); rc != nil {
		return rc.Pid
	}
	return 0
}

// killGrace is how long kill waits for go-plugin's graceful shutdown
// before it kills the process itself.
const killGrace = 5 * time.Second

// kill stops the process (gracefully, then by force) and logs what it
// printed last. go-plugin's Kill first asks the plugin to shut down over
// gRPC and waits for the answer until the process exits: a frozen or
// stopped process never answers, so after killGrace the process is killed
// here, which ends that wait.
func (p *proc) kill() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.client.Kill()
	}()
	select {
	case <-done:
	case <-time.After(killGrace):
		if p.cmd.Process != nil {
			_ = p.cmd.Process.Kill()
		}
		<-done
	}
	if p.shm != nil {
		p.shm.close()
	}
	p.stdout.Flush()
	p.stderr.Flush()
}

// ErrBinary is wrapped by errors about the plugin binary itself: missing,
// or not matching its sha256 pin.
var ErrBinary = errors.New("plugin binary")

// start launches the plugin process and dispenses its Output client.
func start(spec Spec, log *slog.Logger) (*proc, error) {
	if err := checkBinary(spec.Path); err != nil {
		return nil, err
	}
	cmd := exec.Command(spec.Path)
	// The plugin dies with camd, even if camd is killed with SIGKILL. The
	// SDK also watches its parent, for plugins on other systems.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Env = spec.Env
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	if spec.SocketDir != "" {
		// The plugin creates its socket here, in camd's private directory,
		// instead of in the shared $TMPDIR.
		cmd.Env = append(cmd.Env, plugin.EnvUnixSocketDir+"="+spec.SocketDir)
	}

	p := &proc{cmd: cmd, stdout: newLineWriter(log, slog.LevelInfo, "stdout"), stderr: newLineWriter(log, slog.LevelWarn, "stderr")}
	if link, err := newShmLink(); err != nil {
		log.Debug("frames over gRPC: no shared memory", "err", err)
	} else {
		p.shm = link
		cmd.ExtraFiles = link.files()
		cmd.Env = append(cmd.Env, link.env())
	}
	cfg := &plugin.ClientConfig{
		HandshakeConfig:  wire.Handshake,
		Plugins:          map[string]plugin.Plugin{wire.PluginName: &wire.GRPCPlugin{}},
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           hclogFor(log),
		SyncStdout:       p.stdout,
		SyncStderr:       p.stderr,
		AutoMTLS:         spec.AutoMTLS,
		StartTimeout:     10 * time.Second,
		SkipHostEnv:      true, // cmd.Env has it already
		GRPCDialOptions:  wire.DialOptions(),
	}
	if spec.SHA256 != "" {
		sum, err := hex.DecodeString(spec.SHA256)
		if err != nil {
			return nil, fmt.Errorf("sha256: %w", err)
		}
		cfg.SecureConfig = &plugin.SecureConfig{Checksum: sum, Hash: sha256.New()}
	}
	p.client = plugin.NewClient(cfg)
	rpc, err := p.client.Client()
	if err != nil {
		p.kill()
		if errors.Is(err, plugin.ErrChecksumsDoNotMatch) {
			return nil, fmt.Errorf("%w %s: its sha256 does not match the pinned value (rebuilt or replaced?)", ErrBinary, spec.Path)
		}
		return nil, fmt.Errorf("start plugin %s: %w", spec.Path, err)
	}
	raw, err := rpc.Dispense(wire.PluginName)
	if err != nil {
		p.kill()
		return nil, fmt.Errorf("plugin %s: %w", spec.Path, err)
	}
	p.out = raw.(pb.OutputClient)
	if p.shm != nil {
		p.shm.started()
		if !p.shm.accepted() {
			p.shm.close()
			p.shm = nil
		}
	}
	return p, nil
}

// checkBinary checks that path is an executable file (or a command found
// in PATH), so a typo is reported as such, not as a failed handshake.
func checkBinary(path string) error {
	if !strings.ContainsRune(path, os.PathSeparator) {
		if _, err := exec.LookPath(path); err != nil {
			return fmt.Errorf("%w: %s not found in PATH", ErrBinary, path)
		}
		return nil
	}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%w %s does not exist (run make build?)", ErrBinary, path)
	case err != nil:
		return fmt.Errorf("%w: %w", ErrBinary, err)
	case fi.IsDir() || fi.Mode()&0o111 == 0:
		return fmt.Errorf("%w %s is not an executable file", ErrBinary, path)
	}
	return nil
}

// plain returns err without gRPC's "rpc error: code = ... desc =" framing:
// what the user needs is the plugin's own words.
func plain(err error) error {
	if st, ok := status.FromError(err); ok && st.Code() != codes.OK {
		if st.Code() == codes.Unavailable || st.Code() == codes.DeadlineExceeded {
			return fmt.Errorf("plugin not answering: %s", st.Message())
		}
		return errors.New(st.Message())
	}
	return err
}

// configure checks the plugin's identity and hands it its config.
func configure(ctx context.Context, out pb.OutputClient, spec Spec, validateOnly bool) (*pb.ConfigureResponse, *pb.InfoResponse, error) {
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	info, err := out.Info(ictx, &pb.InfoRequest{})
	if err != nil {
		return nil, nil, fmt.Errorf("plugin info: %w", plain(err))
	}
	if info.ApiVersion != wire.APIVersion {
		return nil, nil, fmt.Errorf("plugin %q speaks API version %d, camd speaks %d", info.Name, info.ApiVersion, wire.APIVersion)
	}
	cctx, cancel2 := context.WithTimeout(ctx, 15*time.Second)
	defer cancel2()
	resp, err := out.Configure(cctx, &pb.ConfigureRequest{
		Output: spec.Name, Cameras: spec.Cameras, ConfigYaml: spec.ConfigYAML, ValidateOnly: validateOnly,
		Security: sdk.SecurityToProto(spec.Security),
	})
	if err != nil {
		return nil, nil, plain(err)
	}
	if len(resp.Errors) > 0 {
		ce := &ConfigError{}
		for _, e := range resp.Errors {
			ce.Errors = append(ce.Errors, &sdk.ConfigError{Key: e.Key, Message: e.Message})
		}
		return nil, nil, ce
	}
	if resp.StartError != "" {
		return nil, nil, errors.New(resp.StartError)
	}
	return resp, info, nil
}

// Checked is what Validate learned about an output.
type Checked struct {
	Version string   // the plugin's version
	Listen  []string // the addresses it would listen on
}

// Validate starts the plugin, has it check its config without starting, and
// stops it. It returns a *ConfigError when the plugin refuses the config.
func Validate(ctx context.Context, spec Spec, log *slog.Logger) (Checked, error) {
	p, err := start(spec, log)
	if err != nil {
		return Checked{}, err
	}
	defer p.kill()
	resp, info, err := configure(ctx, p.out, spec, true)
	if err != nil {
		return Checked{}, err
	}
	return Checked{Version: info.Version, Listen: resp.Listen}, nil
}

// Status is an output's state for /api/status.
type Status struct {
	Name        string     `json:"name"`
	Plugin      string     `json:"plugin"`
	Version     string     `json:"version,omitempty"`
	State       string     `json:"state"`
	PID         int        `json:"pid"`
	Restarts    int        `json:"restarts"`
	NextRestart *time.Time `json:"next_restart,omitempty"` // while restarting
	URLs        []string   `json:"urls"`
	Listen      []string   `json:"listen,omitempty"` // the addresses its plugin listens on
	LastError   string     `json:"last_error,omitempty"`
	// Cameras are the counters per camera of this output's mailbox.
	Cameras      map[string]router.CameraCounters `json:"cameras"`
	PluginStatus json.RawMessage                  `json:"plugin_status,omitempty"`
}

// Counters are an output's state and counters, without asking the plugin.
type Counters struct {
	State    string
	Restarts int
	Cameras  map[string]router.CameraCounters
}

// Counters returns the output's state and counters.
func (o *Output) Counters() Counters {
	o.mu.Lock()
	c := Counters{State: o.state, Restarts: o.restarts}
	o.mu.Unlock()
	c.Cameras = o.mb.Counters()
	return c
}

// Metrics returns the plugin's own metrics in the Prometheus text format,
// or nil when it is not running or has none.
func (o *Output) Metrics(ctx context.Context) ([]byte, error) {
	o.mu.Lock()
	client := o.client
	o.mu.Unlock()
	if client == nil {
		return nil, nil
	}
	resp, err := client.Metrics(ctx, &pb.MetricsRequest{})
	if err != nil {
		if status.Code(err) == codes.Unimplemented {
			return nil, nil
		}
		return nil, plain(err)
	}
	return resp.Text, nil
}

// Status returns the output's state, including the plugin's own counters
// if it answers within ctx.
func (o *Output) Status(ctx context.Context) Status {
	o.mu.Lock()
	s := Status{
		Name: o.spec.Name, Plugin: o.spec.Plugin, Version: o.version, State: o.state, PID: o.pid,
		Restarts: o.restarts, URLs: o.urls, Listen: o.listen, LastError: o.lastErr,
	}
	if !o.nextRestart.IsZero() {
		t := o.nextRestart
		s.NextRestart = &t
	}
	client := o.client
	o.mu.Unlock()
	if s.URLs == nil {
		s.URLs = []string{}
	}
	s.Cameras = o.mb.Counters()
	if client != nil {
		if r, err := client.Status(ctx, &pb.StatusRequest{}); err == nil && len(r.Json) > 0 {
			s.PluginStatus = r.Json
		}
	}
	return s
}
