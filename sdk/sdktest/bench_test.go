package sdktest_test

import (
	"context"
	"testing"
	"time"

	"github.com/camd/camd/device"
	"github.com/camd/camd/sdk"
	"github.com/camd/camd/sdk/sdktest"
)

// nop is an output that does nothing with frames.
type nop struct{}

func (nop) Configure(sdk.Config) error              { return nil }
func (nop) Start(context.Context) ([]string, error) { return nil, nil }
func (nop) HandleFrame(sdk.Frame)                   {}
func (nop) Stop(context.Context) error              { return nil }

// BenchmarkGRPCHop measures one frame's round trip across the plugin
// boundary: send over gRPC, HandleFrame, ack back. ns/op is the cost of
// the hop per frame at each size.
func BenchmarkGRPCHop(b *testing.B) {
	sizes := []struct {
		name string
		jpeg []byte
	}{
		{"640x480", mustFrame(b, 640, 480)},
		{"1280x720", mustFrame(b, 1280, 720)},
		{"1MB", make([]byte, 1<<20)},
		{"8MB", make([]byte, 8<<20)},
	}
	for _, s := range sizes {
		b.Run(s.name, func(b *testing.B) {
			h := sdktest.New(b, nop{})
			if _, err := h.Start("bench", []string{"cam"}, ""); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(s.jpeg)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := h.Send(sdk.Frame{Camera: "cam", Seq: uint64(i + 1), Captured: time.Now(), JPEG: s.jpeg}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func mustFrame(b *testing.B, w, h int) []byte {
	jpg, err := device.NewSim(w, h, 30, 80).Frame(1, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	return jpg
}

// Frames of 8 MB pass the plugin's gRPC receive limit.
func TestLargeFramePasses(t *testing.T) {
	h := sdktest.New(t, nop{})
	if _, err := h.Start("big", []string{"cam"}, ""); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{4 << 20, 8 << 20, 12 << 20} {
		if err := h.Send(sdk.Frame{Camera: "cam", Seq: uint64(n), JPEG: make([]byte, n)}); err != nil {
			t.Fatalf("%d-byte frame: %v", n, err)
		}
	}
}
