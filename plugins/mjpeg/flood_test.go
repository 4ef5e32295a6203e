package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/camd/camd/device"
	"github.com/camd/camd/sdk"
	"github.com/camd/camd/sdk/sdktest"
)

// floodConfigEnv passes TestFlood's plugin config to TestFloodServer.
const floodConfigEnv = "MJPEG_FLOOD_CONFIG"

// TestFloodServer is the plugin TestFlood floods, in a process of its own
// so that its memory is measured alone. It sends a frame every 100ms.
func TestFloodServer(t *testing.T) {
	if !sdktest.InChild(t) {
		t.Skip("the server of TestFlood, run by it")
	}
	h := sdktest.New(t, &MJPEG{})
	urls, err := h.Start("web", []string{"cam"}, "listen: 127.0.0.1:0\n"+os.Getenv(floodConfigEnv))
	if err != nil {
		t.Fatal(err)
	}
	img := jpegFrame(t)
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for seq := uint64(1); ; seq++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if err := h.Send(sdk.Frame{Camera: "cam", Seq: seq, Captured: time.Now(), JPEG: img}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	sdktest.Ready(t, strings.TrimSuffix(urls[0], "/"))
	close(stop)
	<-done
}

// A flood of half-open connections neither stops the plugin serving nor
// leaves it bigger once it ends: a viewer connected before the flood keeps
// getting frames throughout, a new viewer from another address is served
// while one address floods, and the plugin's memory comes back near where
// it was. The flood is 3,000 connections from 127.0.0.1 that send half a
// request and wait.
func TestFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("floods a child process with 3,000 connections")
	}
	if raceDetector {
		t.Skip("the race detector's own memory hides the plugin's")
	}
	const flood = 3000
	tests := []struct {
		name, config string
		// newViewer is the status a new viewer from another address gets
		// during the flood; 503 also admits a connection closed unanswered
		// (the server answers refusals only while it has time to).
		newViewer int
	}{
		// The flood hits the per-client connection cap: the rest of the
		// world is served.
		{"one client over its cap", "", http.StatusOK},
		// The per-client caps are raised (as behind a proxy): the flood
		// fills the server's connection cap, so new viewers wait, but the
		// memory of the connections it let in is returned afterwards.
		{"the server's cap", "max_viewers_per_client: 5000\n", http.StatusServiceUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			child := sdktest.StartChild(t, "TestFloodServer", floodConfigEnv+"="+tt.config)
			base := child.Ready
			stream := base + "/cameras/cam/stream.mjpg"

			watcher := clientFrom("127.0.0.2")
			resp, err := watcher.Get(stream)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			frames := make(chan struct{}, 100)
			go func() {
				r := device.NewMultipartReader(resp.Body, Boundary, 8<<20)
				for {
					if _, _, err := r.NextPart(); err != nil {
						close(frames)
						return
					}
					select {
					case frames <- struct{}{}:
					default:
					}
				}
			}()
			nextFrame := func(when string) {
				t.Helper()
				select {
				case _, ok := <-frames:
					if !ok {
						t.Fatalf("%s: the viewer's stream ended", when)
					}
				case <-time.After(20 * time.Second):
					t.Fatalf("%s: no frame for 20s", when)
				}
			}
			nextFrame("before the flood")
			before := child.RSS()

			f := sdktest.NewFlood(t, strings.TrimPrefix(base, "http://"), "127.0.0.1", flood)
			time.Sleep(500 * time.Millisecond) // let the server take them all in
			during := child.RSS()
			for len(frames) > 0 {
				<-frames
			}
			nextFrame("during the flood")
			resp3, err := clientFrom("127.0.0.3").Get(stream)
			switch {
			case err != nil && tt.newViewer == http.StatusServiceUnavailable:
				t.Logf("a new viewer during the flood: %v", err)
			case err != nil:
				t.Fatalf("a new viewer during the flood: %v", err)
			default:
				resp3.Body.Close()
				if resp3.StatusCode != tt.newViewer {
					t.Fatalf("a new viewer during the flood: %d, want %d", resp3.StatusCode, tt.newViewer)
				}
			}

			f.Close()
			// Near baseline: within 8 MB, or a quarter of what the flood
			// added if that is more. Without the caps and the reclaim, the
			// RSS stays at its flood-time peak (+40 MB here, +110 MB for
			// 10,000 connections).
			limit := before + max(8<<20, (during-before)/4)
			deadline := time.Now().Add(30 * time.Second)
			after := child.RSS()
			for after > limit && time.Now().Before(deadline) {
				time.Sleep(200 * time.Millisecond)
				after = child.RSS()
			}
			t.Logf("RSS before %s, during %s, after %s", mb(before), mb(during), mb(after))
			if after > limit {
				t.Fatalf("RSS %s after the flood, want at most %s (before: %s, during: %s)", mb(after), mb(limit), mb(before), mb(during))
			}
			nextFrame("after the flood")
			if code := getStatus(t, clientFrom("127.0.0.1"), stream); code != http.StatusOK {
				t.Fatalf("the flooding address after the flood: %d", code)
			}
		})
	}
}

// getStatus opens url, returns the status code and closes it.
func getStatus(t *testing.T, c *http.Client, url string) int {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
	}
	return resp.StatusCode
}

func mb(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/(1<<20)) }
