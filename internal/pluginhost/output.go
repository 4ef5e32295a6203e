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
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/camd/camd/internal/router"
	pb "github.com/camd/camd/proto/outputv1"
	"github.com/camd/camd/sdk"
)

// Spec describes one output: which plugin binary to run and how.
type Spec struct {
	Name       string   // the output's name
	Plugin     string   // the plugin's name, for status ("mjpeg"), or the command
	Path       string   // the plugin binary
	SHA256     string   // optional pin of the binary's hash
	Cameras    []string // cameras it receives
	ConfigYAML []byte   // its config block
	AutoMTLS   bool
	SocketDir  string // where go-plugin puts the plugin's unix socket

	MinBackoff, MaxBackoff time.Duration // restart backoff; zero: 250ms and 30s
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

	mu       sync.Mutex
	state    string
	pid      int
	restarts int
	urls     []string
	lastErr  string
	client   pb.OutputClient
}

// New returns a supervisor for spec. Call Run to start it.
func New(spec Spec, log *slog.Logger) *Output {
	return &Output{spec: spec, log: log.With("output", spec.Name), mb: router.NewMailbox(), state: StateStarting}
}

// Offer implements router.Sink.
func (o *Output) Offer(f sdk.Frame) { o.mb.Offer(f) }

// Name returns the output's name.
func (o *Output) Name() string { return o.spec.Name }

// Cameras returns the cameras the output receives.
func (o *Output) Cameras() []string { return o.spec.Cameras }

// Restart backoff: from Spec.MinBackoff doubling to Spec.MaxBackoff; a
// plugin that stayed up for healthyAfter starts again from MinBackoff.
const (
	healthyAfter = time.Minute
	// ackTimeout: a plugin that holds a frame longer than this is hung and
	// is restarted.
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
		started := time.Now()
		err := o.runOnce(ctx)
		if ctx.Err() != nil {
			o.setState(StateStopped, "")
			return
		}
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
		if time.Since(started) > healthyAfter {
			backoff = minBackoff
		}
		o.mu.Lock()
		o.restarts++
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
}

// runOnce runs one plugin process until it fails or ctx ends.
func (o *Output) runOnce(ctx context.Context) error {
	o.setState(StateStarting, "")
	client, out, err := start(o.spec, o.log)
	if err != nil {
		return err
	}
	defer client.Kill()

	resp, err := configure(ctx, out, o.spec, false)
	if err != nil {
		return err
	}
	pid := 0
	if rc := client.ReattachConfig(); rc != nil {
		pid = rc.Pid
	}
	o.mu.Lock()
	o.state, o.urls, o.client, o.pid = StateRunning, resp.Urls, out, pid
	o.mu.Unlock()
	msg := "output ready"
	if len(resp.Urls) > 0 {
		msg += "; open " + strings.Join(resp.Urls, " ")
	}
	o.log.Info(msg, "plugin", o.spec.Plugin, "pid", pid)
	return o.stream(ctx, out)
}

// stream sends frames until the stream fails or ctx ends. On ctx end it
// closes the stream so the plugin sees a clean end before it is killed.
func (o *Output) stream(ctx context.Context, out pb.OutputClient) error {
	sctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := out.Frames(sctx)
	if err != nil {
		return fmt.Errorf("open frame stream: %w", err)
	}
	o.mb.Reset()

	errc := make(chan error, 2)
	go func() { // acks
		for {
			r, err := stream.Recv()
			if err != nil {
				errc <- fmt.Errorf("frame stream: %w", err)
				return
			}
			o.mb.Ack(r.AckCamera)
		}
	}()
	sendCtx, stopSend := context.WithCancel(ctx)
	defer stopSend()
	go func() { // frames
		for {
			f, err := o.mb.Next(sendCtx)
			if err != nil {
				return
			}
			if err := stream.Send(&pb.FramesRequest{Frame: sdk.FrameToProto(f)}); err != nil {
				// The real status comes from Recv.
				return
			}
		}
	}()

	watch := time.NewTicker(time.Second)
	defer watch.Stop()
	for {
		select {
		case err := <-errc:
			return err
		case <-ctx.Done():
			stopSend()
			_ = stream.CloseSend()
			select { // give the plugin a moment to finish the last frame
			case <-errc:
			case <-time.After(time.Second):
			}
			return ctx.Err()
		case now := <-watch.C:
			if d := o.mb.OldestInFlight(now); d > ackTimeout {
				return fmt.Errorf("plugin hung: frame unacknowledged for %s", d.Round(time.Second))
			}
		}
	}
}

// start launches the plugin process and dispenses its Output client.
func start(spec Spec, log *slog.Logger) (*plugin.Client, pb.OutputClient, error) {
	if _, err := os.Stat(spec.Path); err != nil {
		if _, lerr := exec.LookPath(spec.Path); lerr != nil {
			return nil, nil, fmt.Errorf("plugin binary: %w (run make build?)", err)
		}
	}
	cmd := exec.Command(spec.Path)
	// The plugin dies with camd, even if camd is killed with SIGKILL. The
	// SDK also watches its parent, for plugins on other systems.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Env = os.Environ()
	if spec.SocketDir != "" {
		// The plugin creates its socket here, in camd's private directory,
		// instead of in the shared $TMPDIR.
		cmd.Env = append(cmd.Env, plugin.EnvUnixSocketDir+"="+spec.SocketDir)
	}

	cfg := &plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		Plugins:          map[string]plugin.Plugin{sdk.PluginName: &sdk.GRPCPlugin{}},
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		Logger:           hclogFor(log),
		SyncStdout:       lineLogger(log, slog.LevelInfo, "stdout"),
		SyncStderr:       lineLogger(log, slog.LevelWarn, "stderr"),
		AutoMTLS:         spec.AutoMTLS,
		StartTimeout:     10 * time.Second,
		SkipHostEnv:      true, // cmd.Env has it already
	}
	if spec.SHA256 != "" {
		sum, err := hex.DecodeString(spec.SHA256)
		if err != nil {
			return nil, nil, fmt.Errorf("sha256: %w", err)
		}
		cfg.SecureConfig = &plugin.SecureConfig{Checksum: sum, Hash: sha256.New()}
	}
	client := plugin.NewClient(cfg)
	rpc, err := client.Client()
	if err != nil {
		client.Kill()
		if errors.Is(err, plugin.ErrChecksumsDoNotMatch) {
			return nil, nil, fmt.Errorf("plugin %s: sha256 does not match the pinned value", spec.Path)
		}
		return nil, nil, fmt.Errorf("start plugin %s: %w", spec.Path, err)
	}
	raw, err := rpc.Dispense(sdk.PluginName)
	if err != nil {
		client.Kill()
		return nil, nil, fmt.Errorf("plugin %s: %w", spec.Path, err)
	}
	return client, raw.(pb.OutputClient), nil
}

// configure checks the plugin's identity and hands it its config.
func configure(ctx context.Context, out pb.OutputClient, spec Spec, validateOnly bool) (*pb.ConfigureResponse, error) {
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	info, err := out.Info(ictx, &pb.InfoRequest{})
	if err != nil {
		return nil, fmt.Errorf("plugin info: %w", err)
	}
	if info.ApiVersion != sdk.APIVersion {
		return nil, fmt.Errorf("plugin %q speaks API version %d, camd speaks %d", info.Name, info.ApiVersion, sdk.APIVersion)
	}
	cctx, cancel2 := context.WithTimeout(ctx, 15*time.Second)
	defer cancel2()
	resp, err := out.Configure(cctx, &pb.ConfigureRequest{
		Output: spec.Name, Cameras: spec.Cameras, ConfigYaml: spec.ConfigYAML, ValidateOnly: validateOnly,
	})
	if err != nil {
		return nil, fmt.Errorf("configure: %w", err)
	}
	if len(resp.Errors) > 0 {
		ce := &ConfigError{}
		for _, e := range resp.Errors {
			ce.Errors = append(ce.Errors, &sdk.ConfigError{Key: e.Key, Message: e.Message})
		}
		return nil, ce
	}
	return resp, nil
}

// Validate starts the plugin, has it check its config without starting, and
// stops it. It returns a *ConfigError when the plugin refuses the config.
func Validate(ctx context.Context, spec Spec, log *slog.Logger) error {
	client, out, err := start(spec, log)
	if err != nil {
		return err
	}
	defer client.Kill()
	_, err = configure(ctx, out, spec, true)
	return err
}

// Status is an output's state for /api/status.
type Status struct {
	Name         string                           `json:"name"`
	Plugin       string                           `json:"plugin"`
	State        string                           `json:"state"`
	PID          int                              `json:"pid"`
	Restarts     int                              `json:"restarts"`
	URLs         []string                         `json:"urls"`
	LastError    string                           `json:"last_error,omitempty"`
	Cameras      map[string]router.CameraCounters `json:"cameras"`
	PluginStatus json.RawMessage                  `json:"plugin_status,omitempty"`
}

// Status returns the output's state, including the plugin's own counters
// if it answers within ctx.
func (o *Output) Status(ctx context.Context) Status {
	o.mu.Lock()
	s := Status{
		Name: o.spec.Name, Plugin: o.spec.Plugin, State: o.state, PID: o.pid,
		Restarts: o.restarts, URLs: o.urls, LastError: o.lastErr,
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
