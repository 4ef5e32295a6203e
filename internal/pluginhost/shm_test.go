package pluginhost

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/camd/camd/sdk/wire"
)

// TestSharedMemoryFrames: a Go plugin takes frames through shared memory,
// and every frame arrives whole: several cameras, frames that outgrow
// their region, a placeholder; the frames it releases are reused, and
// those it keeps never change.
func TestSharedMemoryFrames(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "recorder")
	if out, err := exec.Command("go", "build", "-o", bin, "./testdata/recorder").CombinedOutput(); err != nil {
		t.Fatalf("build the test plugin: %v\n%s", err, out)
	}
	record := filepath.Join(dir, "frames.txt")
	o := New(Spec{Name: "rec", Plugin: "recorder", Path: bin, Cameras: []string{"a", "b"},
		ConfigYAML: []byte("file: " + record)}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); o.Run(ctx, "") }()
	defer func() { cancel(); <-done }()
	select {
	case err := <-o.Launched():
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the plugin did not start in 60s")
	}
	var want []string
	send := func(f wire.Frame) {
		t.Helper()
		want = append(want, fmt.Sprintf("%s %d %d %x %v", f.Camera, f.Seq, len(f.JPEG), sha256.Sum256(f.JPEG), f.Placeholder))
		if !o.Offer(f) {
			scribble(f.JPEG) // not kept: the camera may reuse the bytes now
		}
		// One at a time, handled before the next is offered, so none is
		// replaced by a newer one. (Its ack may still be on its way:
		// then the next frame waits for it.)
		deadline := time.Now().Add(30 * time.Second)
		for {
			b, _ := os.ReadFile(record)
			if bytes.Contains(b, []byte("kept frame changed")) {
				t.Fatalf("a frame the plugin kept changed when it released another:\n%s", b)
			}
			if bytes.Count(b, []byte("\n")) == len(want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("frame %s/%d not handled in 30s", f.Camera, f.Seq)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	frame := func(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }
	for i, size := range []int{1000, 40 << 10, 39 << 10, 300 << 10, 5 << 20, 2000} {
		send(wire.Frame{Camera: "a", Seq: uint64(i + 1), Captured: time.Now(), JPEG: frame(size, byte(i))})
		send(wire.Frame{Camera: "b", Seq: uint64(i + 1), Captured: time.Now(), JPEG: frame(size/2+1, byte(100+i)), Placeholder: i == 2})
	}
	// A burst: frames offered faster than acks come wait, newest wins,
	// and the newest is sent when the ack comes, with no later offer.
	for i := range 50 {
		f := wire.Frame{Camera: "a", Seq: uint64(1000 + i), Captured: time.Now(), JPEG: frame(40<<10, byte(i))}
		if !o.Offer(f) {
			scribble(f.JPEG)
		}
	}
	last := fmt.Sprintf("a 1049 %d %x false", 40<<10, sha256.Sum256(frame(40<<10, 49)))
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(record)
		if strings.HasSuffix(strings.TrimSpace(string(b)), last) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the burst's newest frame did not arrive in 30s; the plugin got:\n%s", b)
		}
		time.Sleep(5 * time.Millisecond)
	}

	// The plugin maps the memory when the first frame comes.
	st := o.Status(ctx)
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", st.PID))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(maps, []byte("camd-frames")) {
		t.Fatalf("the plugin has not mapped the frame memory: frames went over gRPC")
	}

	got, err := os.ReadFile(record)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(got)), "\n")
	var kept []string // the one-at-a-time frames, without the burst's
	for _, l := range lines {
		if !strings.HasPrefix(l, "a 10") || len(strings.Fields(l)[1]) != 4 {
			kept = append(kept, l)
		}
	}
	if g, w := strings.Join(kept, "\n"), strings.Join(want, "\n"); g != w {
		t.Errorf("the plugin got\n%s\nwant\n%s", g, w)
	}
}

// TestHungPluginOnSharedMemory: a plugin that never acknowledges a frame
// holds up nobody. The camera offering frames carries on (the frames wait
// in the mailbox, newest wins) and the output restarts the plugin once a
// frame has gone unacknowledged for AckTimeout.
func TestHungPluginOnSharedMemory(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "recorder")
	if out, err := exec.Command("go", "build", "-o", bin, "./testdata/recorder").CombinedOutput(); err != nil {
		t.Fatalf("build the test plugin: %v\n%s", err, out)
	}
	o := New(Spec{Name: "rec", Plugin: "recorder", Path: bin, Cameras: []string{"a"},
		ConfigYAML: []byte("file: " + filepath.Join(dir, "frames.txt") + "\nhang: yes"),
		AckTimeout: time.Second, MinBackoff: 50 * time.Millisecond}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); o.Run(ctx, "") }()
	defer func() { cancel(); <-done }()
	select {
	case err := <-o.Launched():
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the plugin did not start in 60s")
	}

	// A camera's loop: an Offer that does not return in 10s has stalled
	// the camera.
	offered := make(chan struct{})
	go func() {
		for seq := uint64(1); ctx.Err() == nil; seq++ {
			o.Offer(wire.Frame{Camera: "a", Seq: seq, Captured: time.Now(), JPEG: bytes.Repeat([]byte{byte(seq)}, 1000)})
			select {
			case offered <- struct{}{}:
			case <-ctx.Done():
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	deadline := time.Now().Add(60 * time.Second)
	for o.Counters().Restarts == 0 {
		select {
		case <-offered:
		case <-time.After(10 * time.Second):
			t.Fatal("an Offer waited more than 10s: the hung plugin stalls the camera")
		}
		if time.Now().After(deadline) {
			t.Fatalf("the hung plugin was not restarted in 60s (state %q)", o.Counters().State)
		}
	}
	// The restart is counted just before its reason is recorded.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
		last := o.Status(sctx).LastError
		scancel()
		if strings.Contains(last, "plugin hung") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("last error %q, want it to say the plugin hung", last)
		}
	}
}

// scribble overwrites a frame the way a camera reusing its buffer would.
func scribble(b []byte) {
	for i := range b {
		b[i] = 0xEE
	}
}
