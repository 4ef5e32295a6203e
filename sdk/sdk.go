// Package sdk is how an output plugin for camd is written.
//
// An output plugin is a separate program that camd starts and feeds with
// JPEG frames over gRPC. With this package a plugin is one small Go type that
// implements Output, and a main function that calls Serve:
//
//	func main() { sdk.Serve(sdk.Info{Name: "mjpeg", Version: "1.0.0"}, &MJPEG{}) }
//
// The SDK takes care of the go-plugin handshake, the frame stream and its
// acknowledgements, structured logs that camd re-emits under the output's
// name, and exiting when camd dies. The reference plugins in plugins/ use
// exactly this package.
package sdk

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/camd/camd/sdk/wire"
)

// APIVersion is the version of the plugin contract this SDK implements.
const APIVersion = wire.APIVersion

// Info identifies a plugin to camd and to a person running it by hand.
type Info struct {
	Name    string
	Version string
	// SampleConfig is the plugin's sample config block with its defaults
	// (usually an embedded sample.yaml): `camd-plugin-<name>
	// -sample-config` prints it, and the plugin's README shows it.
	SampleConfig string
	// OnDemand says the output wants a camera's frames only while someone
	// uses them: viewers taken with HTTP.Acquire and Config.Demand's holds
	// (see Demand). Without it the output gets every frame of its cameras.
	OnDemand bool
}

// Frame is one JPEG image from one camera. JPEG is shared, read-only
// memory: a plugin may keep a reference (e.g. as the latest frame) but must
// never modify it. Placeholder marks the pictures camd draws while the
// camera is offline.
//
// A plugin that knows when it has finished with a frame may call
// f.Release then: the SDK reads a later frame into the same bytes instead
// of new memory, so a camera costs the plugin no allocation and no garbage
// collection per frame. It is optional; the mjpeg plugin does it with a
// reference count per frame (the latest, and each viewer writing it).
type Frame = wire.Frame

// Config is what camd hands a plugin when it configures it.
type Config struct {
	Output  string       // the output's name in config.yaml
	Cameras []string     // the cameras this output receives
	Raw     []byte       // the output's `config:` block as YAML; decode it with DecodeConfig
	Log     *slog.Logger // logs that camd shows under the output's name
	// Metrics is where the plugin registers its own metrics (viewers,
	// frames skipped, ...), e.g. with prometheus.NewGaugeFunc over the
	// counters it keeps anyway. camd serves them in its /metrics as
	// camd_plugin_<name>{output="..."}, beside the plugin's Go runtime and
	// process metrics, which the SDK registers itself.
	Metrics prometheus.Registerer
	// Security is who may use the output, from config.yaml. HTTP enforces
	// it by itself (it finds it in Start's context); a plugin serving
	// something else must enforce it too.
	Security Security
	// Demand is what the output wants frames of, with Info.OnDemand (nil
	// without). HTTP.Acquire holds a viewer's camera by itself.
	Demand *Demand
}

// Output is implemented by a plugin.
//
// camd calls Configure once, then Start once, then HandleFrame for every
// frame, then Stop. HandleFrame is called from one goroutine per camera, so
// frames of different cameras may arrive concurrently, frames of one camera
// never do. Stop is not called concurrently with HandleFrame and may be
// called after a failed Start.
type Output interface {
	// Configure decodes and validates cfg.Raw. It must not open listeners or
	// files: camd validate calls it alone. Return ConfigErrors (or a
	// *ConfigError) so camd can point at the offending line.
	Configure(cfg Config) error
	// Start opens listeners and starts serving. It returns the URLs viewers
	// can open, which camd logs and shows in /api/status.
	Start(ctx context.Context) (urls []string, err error)
	// HandleFrame receives a frame. It should return quickly: camd does not
	// send this camera's next frame until it returns, and keeps only the
	// newest one meanwhile.
	HandleFrame(f Frame)
	// Stop closes listeners and viewers' connections.
	Stop(ctx context.Context) error
}

// CameraSetter is optionally implemented by an Output whose camera list can
// change while it runs (a config reload). camd calls it after Start, at any
// time, possibly while HandleFrame runs for other cameras; frames of a
// removed camera stop before the call, frames of an added one start after
// it returns. Without it, camd restarts the plugin to change its cameras.
type CameraSetter interface {
	SetCameras(cameras []string) error
}

// URLReporter is optionally implemented by a CameraSetter: after
// SetCameras, camd shows the URLs it returns (which change with the
// cameras) instead of those Start returned.
type URLReporter interface {
	URLs() []string
}

// Listener is optionally implemented by an Output that listens on network
// addresses. After Configure it returns them (host:port, as configured), so
// camd can refuse two outputs on one port before starting either.
type Listener interface {
	ListenAddrs() []string
}

// StatusReporter is optionally implemented by an Output to publish its own
// counters (viewers, drops, ...) in camd's /api/status. The value must
// marshal to a JSON object.
type StatusReporter interface {
	Status() any
}
