package pluginhost

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/camd/camd/sdk/wire"
)

// TestSharedMemoryFrames: a Go plugin takes frames through shared memory,
// and every frame arrives whole: several cameras, frames that outgrow
// their region, a placeholder; the frames it releases are reused, and
// those it keeps never change.
func TestSharedMemoryFrames(t *testing.T) {
	dir := t.TempDir()
	record := filepath.Join(dir, "frames.txt")
	o, ctx := runOutput(t, Spec{Name: "rec", Plugin: "recorder", Path: buildPlugin(t, "recorder"),
		Cameras: []string{"a", "b"}, ConfigYAML: []byte("file: " + record)})
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

// scribble overwrites a frame the way a camera reusing its buffer would.
func scribble(b []byte) {
	for i := range b {
		b[i] = 0xEE
	}
}

// TestFrameMemoryOnlyGrows: the plugin holds the frame memory's file too.
// It cannot shrink it (camd's next copy into its mapping would die of
// SIGBUS, and every camera with it), not even through a fresh descriptor;
// it may grow it, and camd carries on either way.
func TestFrameMemoryOnlyGrows(t *testing.T) {
	l, err := newShmLink()
	if err != nil {
		t.Skipf("no shared memory here: %v", err)
	}
	defer l.close()
	frame := func(seq uint64, n int) wire.Frame {
		return wire.Frame{Camera: "a", Seq: seq, Captured: time.Now(), JPEG: bytes.Repeat([]byte{byte(seq)}, n)}
	}
	if err := l.send(frame(1, 1000)); err != nil {
		t.Fatal(err)
	}
	fd := int(l.mem.Fd())
	if err := unix.Ftruncate(fd, 0); err == nil {
		t.Fatal("the frame memory could be shrunk")
	}
	reopened, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", fd), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer reopened.Close()
	if err := reopened.Truncate(0); err == nil {
		t.Fatal("the frame memory could be shrunk through /proc/self/fd")
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_GROW); err == nil {
		t.Fatal("a seal against growing could be added")
	}
	if err := unix.Ftruncate(fd, 4<<20); err != nil { // a plugin growing it
		t.Fatal(err)
	}
	// camd goes on: the same region, then a bigger frame in a new one.
	for seq, n := range []int{2000, 300 << 10} {
		if err := l.send(frame(uint64(seq+2), n)); err != nil {
			t.Fatalf("send after the plugin's truncates: %v", err)
		}
	}
}

// TestFullFrameSocketFailsTheLink: a plugin that reads no frame messages
// fills its socket; camd then fails the link (and restarts the plugin)
// rather than wait, which would stall the camera offering the frame.
func TestFullFrameSocketFailsTheLink(t *testing.T) {
	l, err := newShmLink()
	if err != nil {
		t.Skipf("no shared memory here: %v", err)
	}
	defer l.close()
	done := make(chan error, 1)
	go func() {
		for seq := uint64(1); ; seq++ {
			if err := l.send(wire.Frame{Camera: "a", Seq: seq, JPEG: []byte{1, 2, 3}}); err != nil {
				done <- err
				return
			}
		}
	}()
	select {
	case err := <-done:
		if !strings.Contains(err.Error(), "full") {
			t.Errorf("send failed with %v, want the socket full", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("send waited on a full socket")
	}
}
