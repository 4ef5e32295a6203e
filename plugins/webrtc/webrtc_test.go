package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	vp8dec "golang.org/x/image/vp8"

	pb "github.com/camd/camd/proto/outputv1"
	"github.com/camd/camd/sdk"
	"github.com/camd/camd/sdk/sdktest"
)

func TestConfig(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string // "key: message" prefixes
	}{
		{"defaults", "", nil},
		{"sample", sampleConfig, nil},
		{"full", `
codec: vp8
bitrate_kbps: 800
max_fps: 15
ice:
  servers: [{urls: ["stun:stun.example.org:3478"]}, {urls: ["turn:turn.example.org"], username: u, credential: p}]
  udp_ports: "50000-50100"
  nat_1to1_ips: [203.0.113.7]
  interfaces: [eth0]
  mdns: true
whip:
  cam: {url: "https://sfu.example.org/whip/cam", token: t0k}
`, nil},
		{"unknown key", "codecs: h264\n", []string{"codecs: unknown key"}},
		{"unknown codec", "codec: h265\n", []string{`codec: unknown codec "h265" (known: h264, vp8)`}},
		{"bad numbers", "bitrate_kbps: 10\nmax_fps: -1\nmax_viewers: 0\nmax_viewers_per_client: 0\nkeyframe_interval: 10ms\n", []string{
			"max_viewers_per_client: must be at least 1", "bitrate_kbps: must be between", "keyframe_interval: must be at least", "max_fps: must be between", "max_viewers: must be at least 1"}},
		{"bad listen", "listen: 8082\n", []string{"listen: want host:port"}},
		{"bad ice", "ice:\n  servers: [{urls: [\"http://x\"]}]\n  udp_ports: 70000\n  nat_1to1_ips: [router]\n", []string{
			`ice.servers[0].urls: "http://x"`, "ice.udp_ports: want a port", `ice.nat_1to1_ips: "router" is not an IP`}},
		{"ice unknown key", "ice:\n  stun: x\n", []string{"ice.stun: unknown key"}},
		{"ice mdns not a bool", "ice: {mdns: sometimes}\n", []string{"ice.mdns: "}},
		{"whip other camera", "whip:\n  back: {url: \"http://x/whip\"}\n", []string{"whip.back: not one of this output's cameras (cam)"}},
		{"whip bad entry", "whip:\n  cam: {url: \"ftp://x\", tokn: y}\n", []string{"whip.cam.tokn: unknown key", "whip.cam.url: want an http"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { sdktest.CheckConfig(t, &WebRTC{}, []string{"cam"}, tt.yaml, tt.want...) })
	}
}

// TestWHEPSharedEncoder: two pion viewers of one camera share one encoder;
// a viewer joining late gets a keyframe at once; the encoder stops after
// the last viewer leaves and a new one starts for the next viewer. How
// many encoders a camera's measured rate costs is TestEncoderRetune's
// business; here it is only that there is never more than one at a time.
func TestWHEPSharedEncoder(t *testing.T) {
	frames := simFrames(t, 320, 240, 30)
	for _, codec := range codecNames() {
		t.Run(codec, func(t *testing.T) {
			// A long keyframe interval: any quick keyframe is a forced one.
			h, base := start(t, []string{"cam"}, "codec: "+codec+"\nkeyframe_interval: 60s\n")
			feed(t, h, "cam", frames)
			whep := base + "/cameras/cam/whep"

			a, resp, err := dialWHEP(t, whep)
			if err != nil {
				t.Fatal(err)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/sdp" {
				t.Fatalf("answer Content-Type %q", ct)
			}
			if !strings.HasPrefix(a.session, "/cameras/cam/whep/") {
				t.Fatalf("Location %q", a.session)
			}
			got := a.waitFrames(t, 30, 20*time.Second)
			checkDecodes(t, codec, got)

			b, _, err := dialWHEP(t, whep)
			if err != nil {
				t.Fatal(err)
			}
			// Without a forced keyframe b would wait 60 s for one.
			b.waitFrames(t, 5, 15*time.Second)

			st := camStatus(t, h, "cam")
			if st["encoders_running"] != 1.0 || st["users"] != 2.0 || st["encoding"] != true {
				t.Fatalf("two viewers: status %v, want one encoder running for two users", st)
			}
			if k := st["keyframes"].(float64); k < 2 {
				t.Fatalf("keyframes = %v, want one per viewer", k)
			}
			started := st["encoders_started"].(float64)
			// The frames went out in batches, not a system call each.
			ub := h.Status()["udp_batches"].(map[string]any)
			if p, c := ub["packets"].(float64), ub["calls"].(float64); p < 30 || c >= p {
				t.Fatalf("udp_batches %v: want the frames' packets sent in fewer calls", ub)
			}

			a.hangUp(t, base)
			b.hangUp(t, base)
			eventually(t, 10*time.Second, "the encoder to stop", func() bool {
				st := camStatus(t, h, "cam")
				return st["users"] == 0.0 && st["encoding"] == false && st["encoders_running"] == 0.0
			})
			n := camStatus(t, h, "cam")["frames_encoded"]
			time.Sleep(300 * time.Millisecond)
			if m := camStatus(t, h, "cam")["frames_encoded"]; m != n {
				t.Fatalf("frames_encoded went from %v to %v with no viewers", n, m)
			}
			if v := h.Status()["viewers"]; v != 0.0 {
				t.Fatalf("viewers = %v after both left", v)
			}

			c, _, err := dialWHEP(t, whep)
			if err != nil {
				t.Fatal(err)
			}
			c.waitFrames(t, 5, 15*time.Second)
			st = camStatus(t, h, "cam")
			if st["encoders_running"] != 1.0 || st["encoders_started"].(float64) <= started {
				t.Fatalf("new viewer after a pause: %v, want a new encoder running", st)
			}
			if st["encoders_running_peak"] != 1.0 {
				t.Fatalf("encoders_running_peak = %v: two encoders ran at once", st["encoders_running_peak"])
			}
		})
	}
}

// checkDecodes has a decoder nobody here wrote decode the received frames.
func checkDecodes(t *testing.T, codec string, frames [][]byte) {
	t.Helper()
	switch codec {
	case "h264":
		probeH264(t, concat(frames), 320, 240, len(frames))
	case "vp8":
		d := vp8dec.NewDecoder()
		d.Init(bytes.NewReader(frames[0]), len(frames[0]))
		fh, err := d.DecodeFrameHeader()
		if err != nil || !fh.KeyFrame || fh.Width != 320 || fh.Height != 240 {
			t.Fatalf("first VP8 frame: %+v, %v", fh, err)
		}
		if _, err := d.DecodeFrame(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestWHEPErrors(t *testing.T) {
	h, base := start(t, []string{"cam"}, "max_viewers: 1\n")
	feed(t, h, "cam", simFrames(t, 160, 120, 5))
	whep := base + "/cameras/cam/whep"

	post := func(url, ctype, body string) *http.Response {
		resp, err := http.Post(url, ctype, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for _, tt := range []struct {
		name string
		resp *http.Response
		want int
	}{
		{"unknown camera", post(base+"/cameras/nope/whep", "application/sdp", "v=0"), http.StatusNotFound},
		{"not SDP", post(whep, "application/json", "{}"), http.StatusUnsupportedMediaType},
		{"garbage SDP", post(whep, "application/sdp", "hello"), http.StatusBadRequest},
		{"huge offer", post(whep, "application/sdp", strings.Repeat("a=x\r\n", 100000)), http.StatusRequestEntityTooLarge},
	} {
		if tt.resp.StatusCode != tt.want {
			t.Errorf("%s: %s, want %d", tt.name, tt.resp.Status, tt.want)
		}
	}
	// An offer without the output's codec (h264) is refused clearly.
	if _, resp, err := dialWHEP(t, whep, webrtc.MimeTypeVP8); err == nil || resp.StatusCode != http.StatusNotAcceptable || !strings.Contains(err.Error(), "video/H264") {
		t.Fatalf("VP8-only offer: %v", err)
	}

	// WHEP's OPTIONS: what the endpoint accepts.
	req, _ := http.NewRequest(http.MethodOptions, whep, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Accept-Post") != "application/sdp" {
		t.Fatalf("OPTIONS: %s %v", resp.Status, resp.Header)
	}

	// Failed negotiations gave their slot back: one viewer fits, a second
	// is refused with 503.
	v, _, err := dialWHEP(t, whep)
	if err != nil {
		t.Fatal(err)
	}
	v.waitFrames(t, 1, 15*time.Second)
	if _, resp, err := dialWHEP(t, whep); err == nil || resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("viewer over max_viewers: %v", err)
	}
	if r := h.Status()["refused"]; r != 1.0 {
		t.Fatalf("refused = %v", r)
	}

	// Trickle is not supported; unknown sessions are 404.
	for method, want := range map[string]int{http.MethodPatch: http.StatusMethodNotAllowed, http.MethodDelete: http.StatusOK} {
		req, _ := http.NewRequest(method, base+v.session, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("%s session: %s, want %d", method, resp.Status, want)
		}
	}
	req, _ = http.NewRequest(http.MethodDelete, base+v.session, nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("second DELETE: %v %v", resp.Status, err)
	}
}

// TestWHEPSecurity: camd's Security, enforced by the SDK's server, holds
// on every WebRTC route: CORS answers only the allowed origins (WHEP's
// preflight and exposed Location included), and with auth a viewer needs a
// token for the camera, sent as WHEP says in the Authorization header.
func TestWHEPSecurity(t *testing.T) {
	const token = "s3cret-view-token"
	sec := sdk.Security{
		AuthRequired: true,
		AllowOrigins: []string{"http://dash.example"},
		Tokens: []sdk.Token{
			{Name: "cam-viewer", SHA256: sha256.Sum256([]byte(token)), Scope: sdk.ScopeView, Cameras: []string{"cam"}},
			{Name: "other-viewer", SHA256: sha256.Sum256([]byte("other-token")), Scope: sdk.ScopeView, Cameras: []string{"other"}},
		},
	}
	h, base := startWith(t, []string{"cam", "other"}, "", sec)
	feed(t, h, "cam", simFrames(t, 160, 120, 5))
	whep := base + "/cameras/cam/whep"

	tests := []struct {
		name, method, origin, auth string
		want                       int
		allowOrigin                string // "": no CORS headers
	}{
		{"preflight from an allowed origin", http.MethodOptions, "http://dash.example", "", http.StatusNoContent, "http://dash.example"},
		{"preflight from another origin", http.MethodOptions, "http://evil.example", "", http.StatusNoContent, ""},
		{"offer without a token", http.MethodPost, "", "", http.StatusUnauthorized, ""},
		{"offer with a wrong token", http.MethodPost, "", "Bearer nope", http.StatusUnauthorized, ""},
		{"offer with another camera's token", http.MethodPost, "", "Bearer other-token", http.StatusForbidden, ""},
		// The page holds no video and says how to get a token (sdk.HTTP.Public).
		{"the player page without a token", http.MethodGet, "", "", http.StatusOK, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := whep
			if tt.method == http.MethodGet {
				url = base + "/cameras/cam/"
			}
			req, _ := http.NewRequest(tt.method, url, strings.NewReader("v=0"))
			req.Header.Set("Content-Type", "application/sdp")
			if tt.origin != "" {
				req.Header.Set("Origin", tt.origin)
			}
			if tt.method == http.MethodOptions {
				req.Header.Set("Access-Control-Request-Method", "POST")
				req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
			}
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want || resp.Header.Get("Access-Control-Allow-Origin") != tt.allowOrigin {
				t.Fatalf("%s, Access-Control-Allow-Origin %q; want %d, %q", resp.Status, resp.Header.Get("Access-Control-Allow-Origin"), tt.want, tt.allowOrigin)
			}
			if tt.allowOrigin != "" && (!strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "POST") ||
				!strings.Contains(strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers")), "authorization")) {
				t.Fatalf("preflight headers %v", resp.Header)
			}
		})
	}

	// WHEP's OPTIONS lists the ICE servers, TURN credentials included:
	// only for a request with a credential, never for a preflight.
	t.Run("TURN credentials only with a credential", func(t *testing.T) {
		_, base := startWith(t, []string{"cam"}, "ice:\n  servers:\n    - {urls: [\"turn:127.0.0.1:3478\"], username: turnuser, credential: TurnPassw0rd}\n", sec)
		for _, tc := range []struct {
			name     string
			set      func(*http.Request)
			want     int
			withTURN bool
		}{
			{"preflight", func(r *http.Request) {
				r.Header.Set("Origin", "http://dash.example")
				r.Header.Set("Access-Control-Request-Method", "POST")
			}, http.StatusNoContent, false},
			{"OPTIONS without a token", nil, http.StatusUnauthorized, false},
			{"OPTIONS with the camera's token", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }, http.StatusNoContent, true},
		} {
			req, _ := http.NewRequest(http.MethodOptions, base+"/cameras/cam/whep", nil)
			if tc.set != nil {
				tc.set(req)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			link := strings.Join(resp.Header.Values("Link"), ", ")
			if resp.StatusCode != tc.want || strings.Contains(link, "TurnPassw0rd") != tc.withTURN {
				t.Errorf("%s: %s, Link %q; want %d, TURN credentials %v", tc.name, resp.Status, link, tc.want, tc.withTURN)
			}
		}
	})

	t.Run("a viewer with the camera's token plays and hangs up", func(t *testing.T) {
		hdr := http.Header{"Authorization": {"Bearer " + token}, "Origin": {"http://dash.example"}}
		v, resp, err := dialWHEPWith(t, whep, hdr)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "Location") {
			t.Fatalf("Location not exposed to the allowed origin: %v", resp.Header)
		}
		v.waitFrames(t, 5, 15*time.Second)
		req, _ := http.NewRequest(http.MethodDelete, base+v.session, nil)
		if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("DELETE without the token: %v %v", resp.Status, err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("DELETE with the token: %v %v", resp.Status, err)
		}
	})
}

// TestViewersPerClient: one client address holds at most
// max_viewers_per_client WHEP sessions; more get 429 with Retry-After, and
// a session that ends gives its place back.
func TestViewersPerClient(t *testing.T) {
	h, base := start(t, []string{"cam"}, "max_viewers_per_client: 2\n")
	feed(t, h, "cam", simFrames(t, 160, 120, 5))
	whep := base + "/cameras/cam/whep"
	var vs []*viewer
	for range 2 {
		v, _, err := dialWHEP(t, whep)
		if err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	_, resp, err := dialWHEP(t, whep)
	if err == nil || resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" ||
		!strings.Contains(err.Error(), "max_viewers_per_client is 2") {
		t.Fatalf("third session from one client: %v", err)
	}
	st := h.Status()
	if st["viewers"] != 2.0 || st["refused"] != 1.0 || st["http"].(map[string]any)["client_refused"] != 1.0 {
		t.Fatalf("status %v", st)
	}
	vs[0].hangUp(t, base)
	v, _, err := dialWHEP(t, whep)
	if err != nil {
		t.Fatalf("after one hung up: %v", err)
	}
	v.waitFrames(t, 1, 15*time.Second)
	vs[1].waitFrames(t, 1, 15*time.Second)
}

// TestPagesAndIndex: the player page and the camera list.
func TestPagesAndIndex(t *testing.T) {
	_, base := start(t, []string{"front", "back"}, "")
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, page := get("/"); code != 200 || !strings.Contains(page, `href="cameras/back/"`) || !strings.Contains(page, `href="cameras/front/"`) {
		t.Fatalf("index %d:\n%s", code, page)
	}
	if code, page := get("/cameras/front/"); code != 200 || !strings.Contains(page, `fetch("whep"`) || !strings.Contains(page, "<video") {
		t.Fatalf("player %d:\n%s", code, page)
	}
	if code, _ := get("/cameras/front"); code != 200 { // redirected to the slash
		t.Fatalf("player without slash: %d", code)
	}
	if code, _ := get("/cameras/side/"); code != 404 {
		t.Fatalf("unknown camera page: %d", code)
	}
}

// TestMaxFPSAndCaptureTimestamps: RTP timestamps follow capture times, not
// arrival, and max_fps holds on average in capture time. Which frames are
// dropped is TestMaxFPS's business, where no machine's speed can change
// the answer; here a busy machine may skip more, and the test allows it.
func TestMaxFPSAndCaptureTimestamps(t *testing.T) {
	h, base := start(t, []string{"cam"}, "max_fps: 5\n")
	frames := simFrames(t, 160, 120, 5)
	// Frames arrive about 30 per second but were captured 100 ms apart,
	// on a clock running three times as fast as the arrivals.
	done := make(chan struct{})
	stop := make(chan struct{})
	go func() {
		defer close(done)
		base := time.Now()
		tick := time.NewTicker(time.Second / 30)
		defer tick.Stop()
		for seq := uint64(1); ; seq++ {
			select {
			case <-stop:
				return
			case <-tick.C:
				captured := base.Add(time.Duration(seq) * 100 * time.Millisecond)
				if err := h.Send(sdk.Frame{Camera: "cam", Seq: seq, Captured: captured, JPEG: frames[seq%5]}); err != nil {
					return
				}
			}
		}
	}()
	defer func() { close(stop); <-done }()
	v, _, err := dialWHEP(t, base+"/cameras/cam/whep")
	if err != nil {
		t.Fatal(err)
	}
	var ts []uint32
	v.mu.Lock()
	v.onSample = func(rtpTS uint32) { ts = append(ts, rtpTS) }
	v.mu.Unlock()
	v.waitFrames(t, 25, 20*time.Second)
	v.mu.Lock()
	stamps := append([]uint32(nil), ts...)
	v.mu.Unlock()
	if len(stamps) < 10 {
		t.Fatalf("%d RTP timestamps", len(stamps))
	}
	// Capture times are 100 ms = 9000 ticks apart; arrival times about
	// 3000 ticks, and uneven.
	for i := 1; i < len(stamps); i++ {
		if d := stamps[i] - stamps[i-1]; d == 0 || d%9000 > 1 && d%9000 < 8999 {
			t.Fatalf("RTP timestamp step %d, want a multiple of 9000 (100 ms of capture time)", d)
		}
	}
	// max_fps 5 is every other frame: 18000 ticks per frame on average.
	if avg := float64(stamps[len(stamps)-1]-stamps[0]) / float64(len(stamps)-1); avg < 18000*0.9 {
		t.Fatalf("frames %.0f ticks apart on average, want at least 18000 (max_fps 5)", avg)
	}
}

// TestViewerProcessKilled: a viewer that dies without hanging up (SIGKILL,
// a laptop lid closing) is cleaned up by ICE timeouts and the encoder
// stops.
func TestViewerProcessKilled(t *testing.T) {
	h, base := start(t, []string{"cam"}, "ice: {disconnected_timeout: 1s, failed_timeout: 2s}\n")
	feed(t, h, "cam", simFrames(t, 160, 120, 5))
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperViewer$")
	cmd.Env = append(os.Environ(), "CAMD_TEST_WHEP="+base+"/cameras/cam/whep")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "frames") {
		t.Fatalf("helper viewer: %q %v", line, err)
	}
	if st := camStatus(t, h, "cam"); st["users"] != 1.0 {
		t.Fatalf("status %v", st)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the dead viewer to be dropped", func() bool {
		st := camStatus(t, h, "cam")
		return st["users"] == 0.0 && st["encoding"] == false && h.Status()["viewers"] == 0.0
	})
}

func slogDiscard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestHelperViewer is the viewer process TestViewerProcessKilled kills.
func TestHelperViewer(t *testing.T) {
	url := os.Getenv("CAMD_TEST_WHEP")
	if url == "" {
		t.Skip("helper process for TestViewerProcessKilled")
	}
	v, _, err := dialWHEP(t, url)
	if err != nil {
		t.Fatal(err)
	}
	v.waitFrames(t, 3, 20*time.Second)
	os.Stdout.WriteString("frames\n")
	time.Sleep(time.Minute)
}

// TestICEPortAndNAT: with one UDP port configured every candidate uses it
// (what a router's port forward needs), the NAT address is advertised
// beside the local ones, and a viewer still plays.
func TestICEPortAndNAT(t *testing.T) {
	l, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.LocalAddr().(*net.UDPAddr).Port
	l.Close()
	h, base := start(t, []string{"cam"}, fmt.Sprintf("ice: {udp_ports: \"%d\", nat_1to1_ips: [203.0.113.7]}\n", port))
	feed(t, h, "cam", simFrames(t, 160, 120, 5))
	v, _, err := dialWHEP(t, base+"/cameras/cam/whep")
	if err != nil {
		t.Fatal(err)
	}
	v.waitFrames(t, 5, 15*time.Second)
	answer := v.pc.RemoteDescription().SDP
	var udp, nat int
	for _, line := range strings.Split(answer, "\n") {
		if !strings.HasPrefix(line, "a=candidate:") {
			continue
		}
		f := strings.Fields(line)
		if strings.EqualFold(f[2], "udp") {
			udp++
			if f[5] != strconv.Itoa(port) {
				t.Fatalf("candidate on port %s, want %d: %s", f[5], port, line)
			}
			if f[4] == "203.0.113.7" {
				nat++
			}
		}
	}
	if udp < 2 || nat == 0 {
		t.Fatalf("want local and NAT candidates on port %d; answer:\n%s", port, answer)
	}
}

// TestPlaceholdersPlay: while a camera is offline camd sends a placeholder
// a second. Viewers keep playing (it is encoded like any frame), a viewer
// arriving during the outage sees the placeholder at once, and when the
// camera is back the same encoder carries on live: the 1 fps never retunes
// it. The feeder's capture times are exact, so one encoder is the only
// right answer on any machine.
func TestPlaceholdersPlay(t *testing.T) {
	for _, codec := range codecNames() {
		t.Run(codec, func(t *testing.T) {
			h, base := start(t, []string{"cam"}, "codec: "+codec+"\n")
			fd := feed(t, h, "cam", simFrames(t, 320, 240, 10))
			whep := base + "/cameras/cam/whep"
			a, _, err := dialWHEP(t, whep)
			if err != nil {
				t.Fatal(err)
			}
			a.waitFrames(t, 30, 20*time.Second)

			fd.setOffline("cam", true)
			eventually(t, 10*time.Second, "a placeholder", func() bool { return camStatus(t, h, "cam")["placeholders"].(float64) > 0 })
			b, _, err := dialWHEP(t, whep)
			if err != nil {
				t.Fatal(err)
			}
			first := b.waitFrames(t, 1, 10*time.Second)[0]
			if y := centreLuma(t, codec, first, 320, 240); y < 200 {
				t.Fatalf("a viewer arriving during the outage sees luma %d at the centre, want the placeholder's white block", y)
			}
			// About one a second for both viewers: no stall, no reconnect.
			na, nb := a.count(), b.count()
			a.waitFrames(t, na+3, 15*time.Second)
			b.waitFrames(t, nb+3, 15*time.Second)

			fd.setOffline("cam", false)
			nb = b.count()
			b.waitFrames(t, nb+60, 20*time.Second) // live again: 30 a second
			a.waitFrames(t, a.count()+30, 20*time.Second)
			st := camStatus(t, h, "cam")
			if st["encoders_started"] != 1.0 || st["encoders_running_peak"] != 1.0 || st["users"] != 2.0 {
				t.Fatalf("after the outage: %v, want the one encoder all along, shared by both viewers", st)
			}
		})
	}
}

// centreLuma decodes a keyframe (VP8 with x/image/vp8, H.264 with ffmpeg)
// and returns the luma at the picture's centre row, a third of the way
// down: where placeholderJPEG puts its white block.
func centreLuma(t *testing.T, codec string, key []byte, w, h int) byte {
	t.Helper()
	x, y := w/2, h*5/12
	if codec == "vp8" {
		d := vp8dec.NewDecoder()
		d.Init(bytes.NewReader(key), len(key))
		if _, err := d.DecodeFrameHeader(); err != nil {
			t.Fatal(err)
		}
		img, err := d.DecodeFrame()
		if err != nil {
			t.Fatal(err)
		}
		return img.Y[img.YOffset(x, y)]
	}
	cmd := exec.Command("ffmpeg", "-v", "error", "-f", "h264", "-i", "pipe:", "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "gray", "pipe:")
	cmd.Stdin = bytes.NewReader(key)
	out, err := cmd.Output()
	if err != nil || len(out) != w*h {
		t.Fatalf("ffmpeg decoded %d bytes, want %d: %v", len(out), w*h, err)
	}
	return out[y*w+x]
}

// TestStartErrors: what cannot be opened at Start is reported on its key,
// so camd points at the line; ListenAddrs says the configured address
// before anything is opened.
func TestStartErrors(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	udp, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	tests := []struct {
		name, yaml, key, msg string
	}{
		{"listen address in use", "listen: " + tcp.Addr().String() + "\n", "listen", "address already in use"},
		{"UDP port in use", fmt.Sprintf("listen: 127.0.0.1:0\nice: {udp_ports: \"%d\"}\n", udp.LocalAddr().(*net.UDPAddr).Port), "ice.udp_ports", "address already in use"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sdktest.New(t, &WebRTC{}).Start("rtc", []string{"cam"}, tt.yaml)
			errs := sdk.AsConfigErrors(err)
			if len(errs) != 1 || errs[0].Key != tt.key || !strings.Contains(errs[0].Message, tt.msg) {
				t.Fatalf("start: %v, want %s: …%s", err, tt.key, tt.msg)
			}
		})
	}
	t.Run("ListenAddrs", func(t *testing.T) {
		h := sdktest.New(t, &WebRTC{})
		resp, err := h.Client.Configure(context.Background(), &pb.ConfigureRequest{
			Output: "rtc", Cameras: []string{"cam"}, ConfigYaml: []byte("listen: 0.0.0.0:8092\n"), ValidateOnly: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(resp.Listen, []string{"0.0.0.0:8092"}) {
			t.Fatalf("listen addresses %q", resp.Listen)
		}
	})
}
