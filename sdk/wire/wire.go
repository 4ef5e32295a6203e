// Package wire is the plumbing under the plugin SDK: the go-plugin
// handshake, the gRPC glue, the frame both sides hold and its conversion to
// the contract's messages (proto/outputv1). camd's internals (device,
// router, pluginhost) use it directly; plugin authors use package sdk,
// which re-exports Frame, so what the daemon needs does not widen what an
// author has to learn.
package wire

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	pb "github.com/camd/camd/proto/outputv1"
)

// APIVersion is the version of the contract (proto/outputv1) camd and the
// SDK speak. camd refuses a plugin that reports another one.
const APIVersion = 1

// PluginName is the name under which go-plugin dispenses an output.
const PluginName = "output"

// MaxFrameBytes is the largest message a plugin accepts over gRPC. camd
// drops larger frames at the source, so this is a safety margin, not a
// tuning knob.
const MaxFrameBytes = 32 << 20

// Handshake is shared by camd and every plugin. The cookie only stops a
// plugin being run by hand by mistake; it is not a security measure.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  APIVersion,
	MagicCookieKey:   "CAMD_PLUGIN",
	MagicCookieValue: "b2c0a5b4-camd-output",
}

// Frame is one JPEG image from one camera. JPEG is shared, read-only memory:
// a holder may keep a reference (e.g. as the latest frame) but must never
// modify it.
type Frame struct {
	Camera   string
	Seq      uint64    // per camera, increasing; gaps mean frames were dropped
	Captured time.Time // when the source captured (or received) the frame
	Width    int
	Height   int
	JPEG     []byte
	// Placeholder is set on the frames camd draws itself while the camera
	// is offline: a picture saying so, at 1 fps. A live view shows it; a
	// still or a recording should not pass it off as the camera's.
	Placeholder bool

	buffers *Buffers // where JPEG goes back on Release; nil: nowhere
}

// Release hands f.JPEG back to the Buffers it was filled from, if any, so
// that a later frame is read into it instead of into new memory. Calling
// it is optional (a frame never released is left to the garbage
// collector), but a holder that calls it must do so once, after its last
// use of f.JPEG and of every slice of it.
func (f Frame) Release() {
	if f.buffers != nil {
		f.buffers.put(f.JPEG)
	}
}

// GRPCPlugin is the go-plugin glue for the Output service. The plugin side
// registers Impl; the daemon side gets a pb.OutputClient from GRPCClient.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl pb.OutputServer // nil on the daemon side
}

// GRPCServer implements plugin.GRPCPlugin.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterOutputServer(s, p.Impl)
	return nil
}

// GRPCClient implements plugin.GRPCPlugin.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return pb.NewOutputClient(c), nil
}

// Transport sizes for frames. With gRPC's defaults a 40 KB JPEG costs
// several writes and a WINDOW_UPDATE each way, and every extra write wakes
// the other side's thread: most of a frame's CPU when nobody watches.
// Windows far above a frame (one frame per camera is in flight) and buffers
// that hold a whole frame make a frame one write and one read.
const (
	flowWindow = 16 << 20
	ioBuffer   = 256 << 10
)

// NewGRPCServer returns the gRPC server a plugin serves on: gRPC's default
// 4 MiB receive limit is raised so large frames pass, and the transport is
// sized for frames. opts carry go-plugin's AutoMTLS credentials when
// enabled.
func NewGRPCServer(opts []grpc.ServerOption) *grpc.Server {
	return grpc.NewServer(append(opts,
		grpc.MaxRecvMsgSize(MaxFrameBytes+1<<20),
		grpc.InitialWindowSize(flowWindow), grpc.InitialConnWindowSize(flowWindow),
		grpc.WriteBufferSize(ioBuffer), grpc.ReadBufferSize(ioBuffer),
	)...)
}

// DialOptions are the daemon's side of NewGRPCServer's transport sizes.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithInitialWindowSize(flowWindow), grpc.WithInitialConnWindowSize(flowWindow),
		grpc.WithWriteBufferSize(ioBuffer), grpc.WithReadBufferSize(ioBuffer),
	}
}

// FrameFromProto converts a contract frame. The JPEG bytes are not copied.
func FrameFromProto(f *pb.Frame) Frame {
	return Frame{
		Camera:      f.Camera,
		Seq:         f.Seq,
		Captured:    time.Unix(0, f.CapturedUnixNano),
		Width:       int(f.Width),
		Height:      int(f.Height),
		JPEG:        f.Jpeg,
		Placeholder: f.Placeholder,
	}
}

// FrameToProto converts a frame for the contract. The JPEG bytes are not
// copied.
func FrameToProto(f Frame) *pb.Frame {
	return &pb.Frame{
		Camera:           f.Camera,
		Seq:              f.Seq,
		CapturedUnixNano: f.Captured.UnixNano(),
		Width:            uint32(f.Width),
		Height:           uint32(f.Height),
		Jpeg:             f.JPEG,
		Placeholder:      f.Placeholder,
	}
}

// Buffers is a short list of frame buffers given back with Frame.Release,
// for a receiver that copies frames in (the SDK from shared memory): with
// an output that releases its frames, a camera costs no new memory, and no
// garbage collection, per frame. It is safe for concurrent use.
type Buffers struct {
	mu   sync.Mutex
	free [][]byte
}

// maxFreeBuffers bounds the free list: frames in flight at once (the
// latest of each camera and those a slow viewer is still writing) are few;
// buffers released beyond it are left to the garbage collector.
const maxFreeBuffers = 8

// Fill sets f.JPEG to a copy of jpeg, in a released buffer large enough if
// there is one, else in a new one with room for somewhat larger frames;
// f.Release gives it back.
func (b *Buffers) Fill(f *Frame, jpeg []byte) {
	b.mu.Lock()
	var buf []byte
	for i, x := range b.free {
		if cap(x) >= len(jpeg) {
			last := len(b.free) - 1
			buf, b.free[i], b.free[last] = x, b.free[last], nil
			b.free = b.free[:last]
			break
		}
	}
	b.mu.Unlock()
	if buf == nil {
		// JPEG sizes wander with the scene: an eighth more fits most of
		// the next frames.
		buf = make([]byte, 0, len(jpeg)+len(jpeg)/8)
	}
	f.JPEG = append(buf[:0], jpeg...)
	f.buffers = b
}

func (b *Buffers) put(jpeg []byte) {
	if cap(jpeg) == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.free) < maxFreeBuffers {
		b.free = append(b.free, jpeg[:0])
	}
}
