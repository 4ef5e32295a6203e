package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/camd/camd/device"
	pb "github.com/camd/camd/proto/outputv1"
	"github.com/camd/camd/sdk"
	"github.com/camd/camd/sdk/sdktest"
)

// placeholderJPEG stands for the picture camd draws while a camera is
// offline: any JPEG other than testJPEG.
var placeholderJPEG = func() []byte {
	b, err := device.NewSim(160, 120, 1, 60).Frame(99, time.Now().Add(time.Hour))
	if err != nil {
		panic(err)
	}
	return b
}()

// frame is a frame to send: a camera frame age old, or a placeholder.
type frame struct {
	seq         uint64
	age         time.Duration
	placeholder bool
}

func sendFrames(t *testing.T, h *sdktest.Harness, cam string, frames ...frame) {
	t.Helper()
	for _, f := range frames {
		jpg := testJPEG
		if f.placeholder {
			jpg = placeholderJPEG
		}
		if err := h.Send(sdk.Frame{Camera: cam, Seq: f.seq, Captured: time.Now().Add(-f.age), JPEG: jpg, Placeholder: f.placeholder}); err != nil {
			t.Fatal(err)
		}
	}
}

// A still is never stale and never passes off camd's offline picture as
// the camera's: a plain GET answers the camera's newest frame while it is
// at most stale_after old, else 503; ?placeholder=1 answers the offline
// picture instead of that 503; max_age and newer_than look at the
// camera's own frames only.
//
// stale_after is 30s: a fresh frame (age 0) stays fresh however long a
// busy machine takes to serve the request, and a stale one is 10 minutes
// old.
func TestOffline(t *testing.T) {
	const (
		real        = "real"
		placeholder = "placeholder"
		stale       = 10 * time.Minute
	)
	live := func(seq uint64, age time.Duration) frame { return frame{seq: seq, age: age} }
	ph := func(seq uint64) frame { return frame{seq: seq, placeholder: true} }
	tests := []struct {
		name   string
		frames []frame
		query  string
		code   int
		image  string // real or placeholder, for a 200
		seq    uint64 // X-Frame-Seq, for a 200
		state  string // X-Camera-State
		body   string // in a 503's body
	}{
		{"fresh frame", []frame{live(1, 0)}, "", 200, real, 1, "live", ""},
		{"stale frame", []frame{live(1, stale)}, "", 503, "", 0, "offline",
			`camera "cam" is offline: its newest frame is 10m…s old (stale_after is 30s); ?placeholder=1 answers`},
		{"never seen", nil, "", 503, "", 0, "offline", `camera "cam" has not delivered a frame yet`},
		{"never seen, placeholders", []frame{ph(100), ph(101)}, "", 503, "", 0, "offline", "has not delivered a frame yet"},
		{"never seen, ?placeholder=1", []frame{ph(100), ph(101)}, "?placeholder=1", 200, placeholder, 101, "offline", ""},
		{"stale, ?placeholder=1", []frame{live(1, stale), ph(100)}, "?placeholder=1", 200, placeholder, 100, "offline", ""},
		{"live, ?placeholder=1", []frame{ph(100), live(1, 0)}, "?placeholder=1", 200, real, 1, "live", ""},
		{"stale, ?placeholder=1, no outage drawn", []frame{live(1, stale)}, "?placeholder=1", 503, "", 0, "offline", "is offline"},
		// A placeholder from an outage that ended is not the picture now.
		{"stale, outage over", []frame{ph(100), live(1, stale)}, "?placeholder=1", 503, "", 0, "offline", "is offline"},
		// camd already draws placeholders but the camera's frame is within
		// stale_after: the frame, and the truth about the camera.
		{"offline, frame still fresh", []frame{live(1, 0), ph(100)}, "", 200, real, 1, "offline", ""},
		{"newer_than ignores placeholders", []frame{live(5, 0), ph(100)}, "?newer_than=5&timeout=200ms", 503, "", 0, "offline", "no frame newer than 5 within 200ms"},
		{"max_age ignores placeholders", []frame{live(5, stale), ph(100)}, "?max_age=1s&timeout=200ms", 503, "", 0, "offline", "no frame newer than 1s"},
		{"max_age, ?placeholder=1", []frame{live(5, stale), ph(100)}, "?max_age=1s&timeout=200ms&placeholder=1", 200, placeholder, 100, "offline", ""},
		// Asking for freshness replaces stale_after.
		{"max_age longer than stale_after", []frame{live(5, stale)}, "?max_age=1h", 200, real, 5, "offline", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, base := start(t, &Snapshot{}, "stale_after: 30s\nwait: 5s\n")
			sendFrames(t, h, "cam", tt.frames...)
			resp, body := get(t, base+"/cameras/cam/snapshot.jpg"+tt.query)
			if resp.StatusCode != tt.code {
				t.Fatalf("status %d, want %d: %q", resp.StatusCode, tt.code, body)
			}
			if got := resp.Header.Get("X-Camera-State"); got != tt.state {
				t.Errorf("X-Camera-State %q, want %q", got, tt.state)
			}
			if tt.code != 200 {
				if resp.Header.Get("Retry-After") == "" || !containsInOrder(string(body), tt.body) {
					t.Fatalf("Retry-After %q, body %q, want %q", resp.Header.Get("Retry-After"), body, tt.body)
				}
				return
			}
			want := testJPEG
			if tt.image == placeholder {
				want = placeholderJPEG
			}
			if !bytes.Equal(body, want) {
				t.Fatalf("got the wrong image, want the %s one", tt.image)
			}
			if got := resp.Header.Get("X-Frame-Seq"); got != strconv.FormatUint(tt.seq, 10) {
				t.Fatalf("X-Frame-Seq %s, want %d", got, tt.seq)
			}
		})
	}
}

// containsInOrder reports whether s contains want's parts, split at "…"
// (which stands for anything, such as an age that grew while the request
// was served), in order.
func containsInOrder(s, want string) bool {
	for _, part := range strings.Split(want, "…") {
		i := strings.Index(s, part)
		if i < 0 {
			return false
		}
		s = s[i+len(part):]
	}
	return true
}

// The timelapse stores camera frames only, never a placeholder.
func TestTimelapseSkipsPlaceholders(t *testing.T) {
	dir := t.TempDir()
	h, base := start(t, &Snapshot{}, fmt.Sprintf("dir: %s\nevery: 20ms\n", dir))
	for seq := uint64(1); seq <= 10; seq++ {
		sendFrames(t, h, "cam", frame{seq: 100 + seq, placeholder: true})
		time.Sleep(20 * time.Millisecond)
	}
	if files := listTimelapse(t, base); len(files) != 0 {
		t.Fatalf("%d files written from placeholders", len(files))
	}
	sendFrames(t, h, "cam", frame{seq: 1})
	deadline := time.Now().Add(20 * time.Second)
	for len(listTimelapse(t, base)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the camera frame was not written")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for seq := uint64(11); seq <= 20; seq++ {
		sendFrames(t, h, "cam", frame{seq: 100 + seq, placeholder: true})
		time.Sleep(20 * time.Millisecond)
	}
	files := listTimelapse(t, base)
	if len(files) != 1 {
		t.Fatalf("%d files, want the one camera frame", len(files))
	}
	if b, err := os.ReadFile(filepath.Join(dir, "cam", files[0].Name)); err != nil || !bytes.Equal(b, testJPEG) {
		t.Fatalf("stored file: %v (equal to the camera frame: %v)", err, bytes.Equal(b, testJPEG))
	}
}

// newer_than answers a value it cannot honour with a 400 at once: a frame
// number or a time out of range never wraps around into "any frame".
func TestNewerThanValues(t *testing.T) {
	h, base := start(t, &Snapshot{}, "wait: 5s\n")
	sendFrames(t, h, "cam", frame{seq: 5})
	tests := []struct {
		value string
		code  int
		body  string
	}{
		{"99999999999999999999", 400, "frame number 99999999999999999999 is out of range (at most 18446744073709551615)"},
		{"18446744073709551616", 400, "out of range"},
		{"18446744073709551615", 503, "no frame newer than 18446744073709551615 within 200ms"},
		{"999999999999.0", 400, "unix time 999999999999.0 is out of range"},
		{"99999999999999999999.5", 400, "out of range"},
		{"1e30", 400, "want a frame number"},
		{"NaN", 400, "want a frame number"},
		{"Inf", 400, "want a frame number"},
		{"-1", 400, "want a frame number"},
		{"0x10", 400, "want a frame number"},
		{"4", 200, ""},
		{"1700000000.5", 200, ""},
		{"2001-02-03T04:05:06.789Z", 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			resp, body := get(t, base+"/cameras/cam/snapshot.jpg?timeout=200ms&newer_than="+tt.value)
			if resp.StatusCode != tt.code || !strings.Contains(string(body), tt.body) {
				t.Fatalf("%d %q, want %d %q", resp.StatusCode, body, tt.code, tt.body)
			}
		})
	}
}

func FuzzNewerThan(f *testing.F) {
	for _, s := range []string{
		"99999999999999999999", "18446744073709551615", "18446744073709551616", "0", "007",
		"now", "", "1700000000.5", "1700000000.", ".5", "253402300799.999999999", "253402300800.0",
		"999999999999999999999999.1", "1e30", "NaN", "-Inf", "+5", "-1", "0x10", "1_000",
		"2026-11-24T10:15:00Z", "2026-11-24T10:15:00.123456789+01:00", "9999-12-31T23:59:59Z", "１２３",
	} {
		f.Add(s)
	}
	arrived := time.Unix(1_800_000_000, 0)
	f.Fuzz(func(t *testing.T, v string) {
		n, err := parseNewerThan(v, arrived)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			if v == "now" {
				t.Fatal("now refused")
			}
			return
		}
		switch {
		case allDigits(v):
			if !n.bySeq || strconv.FormatUint(n.seq, 10) != strings.TrimLeft(v[:len(v)-1], "0")+v[len(v)-1:] {
				t.Fatalf("%q read as %+v", v, n)
			}
			if n.fits(sdk.Frame{Seq: n.seq}) || (n.seq < 1<<64-1 && !n.fits(sdk.Frame{Seq: n.seq + 1})) {
				t.Fatalf("%q: frames %d and %d", v, n.seq, n.seq+1)
			}
		case v == "now":
			if n.bySeq || !n.after.Equal(arrived) {
				t.Fatalf("now read as %+v", n)
			}
		default:
			if n.bySeq || n.after.Year() < 0 || n.after.Year() > 9999 {
				t.Fatalf("%q read as %+v", v, n)
			}
			// A frame captured at the time does not fit; one a nanosecond later does.
			if n.fits(sdk.Frame{Captured: n.after}) || !n.fits(sdk.Frame{Captured: n.after.Add(1)}) {
				t.Fatalf("%q: %+v does not order frames by time", v, n)
			}
		}
	})
}

// Requests waiting for a frame hold a viewer slot: one client can park at
// most max_viewers_per_client of them (then 429); plain GETs, which never
// wait, and other clients are not affected.
func TestWaitingRequestsPerClient(t *testing.T) {
	h, base := start(t, &Snapshot{}, "max_viewers_per_client: 2\n")
	snap := base + "/cameras/cam/snapshot.jpg"
	sendFrames(t, h, "cam", frame{seq: 1})
	var wg sync.WaitGroup
	codes := make(chan int, 3)
	wait := func(from string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := clientFrom(from).Get(snap + "?newer_than=1&timeout=30s")
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	wait("127.0.0.1")
	wait("127.0.0.1")
	waitFor(t, "two waiting requests", func() bool { return httpStats(h)["viewers"] == 2.0 })

	resp, body := getFrom(t, "127.0.0.1", snap+"?newer_than=1&timeout=30s")
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "max_viewers_per_client is 2") {
		t.Fatalf("a third waiting request: %d %q", resp.StatusCode, body)
	}
	if resp, _ := getFrom(t, "127.0.0.1", snap); resp.StatusCode != 200 {
		t.Fatalf("a plain GET from the same client: %d", resp.StatusCode)
	}
	wait("127.0.0.2")
	waitFor(t, "the other client's request", func() bool { return httpStats(h)["viewers"] == 3.0 })
	sendFrames(t, h, "cam", frame{seq: 2})
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 200 {
			t.Fatalf("a waiting request got %d when the frame came", c)
		}
	}
}

// SetCameras changes the cameras while running: a request waiting for a
// removed camera is answered 404 at once, a kept camera's is not touched,
// and an added camera is served and gets its timelapse.
func TestSetCameras(t *testing.T) {
	dir := t.TempDir()
	h := sdktest.New(t, &Snapshot{})
	urls, err := h.Start("stills", []string{"front", "back"}, fmt.Sprintf("listen: 127.0.0.1:0\ndir: %s\nevery: 20ms\n", dir))
	if err != nil {
		t.Fatal(err)
	}
	base := strings.TrimSuffix(urls[0], "/")
	type answer struct {
		code int
		body string
	}
	waiting := func(cam string) <-chan answer {
		ch := make(chan answer, 1)
		go func() {
			resp, err := http.Get(base + "/cameras/" + cam + "/snapshot.jpg?newer_than=now&timeout=30s")
			if err != nil {
				ch <- answer{body: err.Error()}
				return
			}
			defer resp.Body.Close()
			var b bytes.Buffer
			b.ReadFrom(resp.Body)
			ch <- answer{resp.StatusCode, b.String()}
		}()
		return ch
	}
	front, back := waiting("front"), waiting("back")
	waitFor(t, "both requests waiting", func() bool { return httpStats(h)["viewers"] == 2.0 })

	resp, err := h.Client.SetCameras(context.Background(), &pb.SetCamerasRequest{Cameras: []string{"back", "side"}})
	if err != nil {
		t.Fatal(err)
	}
	// camd shows the new URLs.
	if want := []string{base + "/", base + "/cameras/back/snapshot.jpg", base + "/cameras/side/snapshot.jpg"}; !slices.Equal(resp.Urls, want) {
		t.Fatalf("URLs after SetCameras: %v, want %v", resp.Urls, want)
	}
	select {
	case a := <-front:
		if a.code != 404 || !strings.Contains(a.body, `camera "front" was removed`) {
			t.Fatalf("waiting for the removed camera: %d %q", a.code, a.body)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the request waiting for the removed camera was not answered")
	}
	sendFrames(t, h, "back", frame{seq: 1})
	if a := <-back; a.code != 200 {
		t.Fatalf("waiting for the kept camera: %d %q", a.code, a.body)
	}
	sendFrames(t, h, "side", frame{seq: 1})
	if resp, _ := get(t, base+"/cameras/side/snapshot.jpg"); resp.StatusCode != 200 {
		t.Fatalf("added camera: %d", resp.StatusCode)
	}
	if resp, _ := get(t, base+"/cameras/front/snapshot.jpg"); resp.StatusCode != 404 {
		t.Fatalf("removed camera: %d", resp.StatusCode)
	}
	waitFor(t, "the added camera's timelapse", func() bool {
		files, _ := listFrames(filepath.Join(dir, "side"))
		return len(files) > 0
	})
	if _, ok := h.Status()["cameras"].(map[string]any)["front"]; ok {
		t.Fatal("the removed camera is still in the status")
	}
}

func httpStats(h *sdktest.Harness) map[string]any {
	st, _ := h.Status()["http"].(map[string]any)
	return st
}

// clientFrom returns an HTTP client whose connections come from the
// loopback address from (127.0.0.x), so one test can be several clients.
func clientFrom(from string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
}

func getFrom(t *testing.T, from, url string) (*http.Response, []byte) {
	t.Helper()
	resp, err := clientFrom(from).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp, b.Bytes()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(10 * time.Millisecond):
		}
	}
}
