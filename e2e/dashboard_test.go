package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/chromedp"
	"github.com/pion/webrtc/v4"
	"golang.org/x/crypto/bcrypt"

	"github.com/camd/camd/device"
)

// artifactsDir is where browser tests leave screenshots for a person to
// look at: $CAMD_ARTIFACTS, or e2e/artifacts (git-ignored).
func artifactsDir(t testing.TB) string {
	dir := os.Getenv("CAMD_ARTIFACTS")
	if dir == "" {
		dir = "artifacts"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// screenshot saves the whole page as name.png in the artifacts folder,
// at the viewport's width.
func screenshot(t testing.TB, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(artifactsDir(t), name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// Viewports the pages must work at.
var (
	desktop = chromedp.EmulateViewport(1280, 800)
	phone   = chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulatePortrait)
)

// dashConfig is two simulated cameras and one whose board is off (nothing
// listens at deadAddr), served by all three plugins, but b has no stills.
func dashConfig(deadAddr, extra string) string {
	return fmt.Sprintf(`%s
cameras:
  - name: a
    source: {type: sim, size: 320x240, fps: 10}
  - name: b
    source: {type: sim, size: 320x240, fps: 10}
  - name: gone
    source: {type: esp32, url: "http://%s"}
outputs:
  - {name: web, plugin: mjpeg, config: {listen: "127.0.0.1:0"}}
  - {name: stills, plugin: snapshot, cameras: [a, gone], config: {listen: "127.0.0.1:0"}}
  - {name: rtc, plugin: webrtc, cameras: [a, b], config: {listen: "127.0.0.1:0"}}
`, extra, deadAddr)
}

// tile is what a dashboard tile shows, read in the browser.
type tile struct {
	State  string `json:"state"`
	Badge  string `json:"badge"`
	Stats  string `json:"stats"`
	Reason string `json:"reason"`
	Width  int    `json:"width"` // the picture's naturalWidth; 0 before it decoded
	Hash   uint32 `json:"hash"`  // of the picture's pixels, to see it change
}

// pageState is the dashboard as the browser has it.
type pageState struct {
	Tiles    map[string]tile `json:"tiles"`
	Polls    int             `json:"polls"`
	LoadedAt int64           `json:"loadedAt"` // changes if the page reloaded
	Overflow int             `json:"overflow"` // pixels wider than the viewport
}

// readTiles hashes each tile's picture from a canvas: the pictures come
// through camd's own port, so the canvas is not tainted.
const readTiles = `(() => {
  const hash = img => {
    if (!img || !img.naturalWidth) return 0;
    const c = document.createElement("canvas");
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    const x = c.getContext("2d");
    x.drawImage(img, 0, 0);
    const d = x.getImageData(0, 0, c.width, c.height).data;
    let h = 0;
    for (let i = 0; i < d.length; i += 4) h = (Math.imul(h, 31) + d[i] + d[i + 1] * 7 + d[i + 2] * 13) >>> 0;
    return h;
  };
  const tiles = {};
  for (const t of document.querySelectorAll(".tile[data-camera]")) {
    const img = t.querySelector("img");
    const text = f => (t.querySelector("[data-field=" + f + "]") || {}).textContent || "";
    tiles[t.dataset.camera] = {state: t.dataset.state || "", badge: text("state"), stats: text("stats"), reason: text("reason"),
      width: img ? img.naturalWidth : 0, hash: hash(img)};
  }
  const p = window.camdProbe || {};
  return JSON.stringify({tiles, polls: p.polls || 0, loadedAt: p.loadedAt || 0,
    overflow: document.documentElement.scrollWidth - window.innerWidth});
})()`

func readPage(t testing.TB, ctx context.Context) pageState {
	t.Helper()
	raw := evaluate[string](t, ctx, readTiles)
	var p pageState
	if err := json.Unmarshal([]byte(raw), &p); err != nil {
		t.Fatal(err)
	}
	return p
}

// waitPage polls the page until cond holds.
func waitPage(t testing.TB, ctx context.Context, within time.Duration, what string, cond func(pageState) bool) pageState {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		p := readPage(t, ctx)
		if cond(p) {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("dashboard: %s did not happen in %v; page %+v", what, within, p)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func navigate(t testing.TB, ctx context.Context, url string) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
}

// TestDashboard: Chromium opens the dashboard of a real camd with two
// simulated cameras and one whose board is off. Every tile shows a
// decoded picture; the live ones change; the numbers change without the
// page reloading; the dead camera shows as offline with its reason. The
// camera page plays WebRTC and MJPEG. Screenshots at desktop and phone
// width go to the artifacts folder.
func TestDashboard(t *testing.T) {
	c := startCamd(t, dashConfig(freeAddr(t), ""))
	c.waitOutputs(nil)
	ctx := newBrowser(t)

	// On the desktop every tile streams MJPEG; on the phone, with one
	// stream allowed (?streams=1), a streams, gone shows stills from the
	// snapshot output, and b (no stills) frames taken from its stream.
	for _, vp := range []struct {
		name, query string
		size        chromedp.Action[chromedp.Void]
		kinds       string
	}{{"desktop", "", desktop, "mjpeg mjpeg mjpeg"}, {"phone", "?streams=1", phone, "mjpeg frame still"}} {
		t.Run(vp.name, func(t *testing.T) {
			if _, err := chromedp.Run(ctx, vp.size); err != nil {
				t.Fatal(err)
			}
			navigate(t, ctx, c.api+"/"+vp.query)
			first := waitPage(t, ctx, 60*time.Second, "a decoded picture in every tile, the dead camera offline", func(p pageState) bool {
				ok := len(p.Tiles) == 3 && p.Polls > 0
				for _, tl := range p.Tiles {
					ok = ok && tl.Width > 0 && tl.Hash != 0
				}
				return ok && p.Tiles["gone"].State == "offline"
			})
			// The live pictures move and the numbers change, and the page
			// is still the one first loaded.
			later := waitPage(t, ctx, 30*time.Second, "live pictures and numbers changing", func(p pageState) bool {
				return p.Tiles["a"].Hash != first.Tiles["a"].Hash && p.Tiles["b"].Hash != first.Tiles["b"].Hash &&
					p.Tiles["a"].Stats != first.Tiles["a"].Stats && p.Polls >= first.Polls+2
			})
			if kinds, _ := chromedp.Run(ctx, chromedp.Evaluate[string](
				`Array.from(document.querySelectorAll(".tile img")).map(i => i.dataset.kind).join(" ")`)); kinds != vp.kinds {
				t.Errorf("tiles show %q, want %q", kinds, vp.kinds)
			}
			if later.LoadedAt != first.LoadedAt {
				t.Errorf("the page reloaded (loaded at %d, then %d): it must update in place", first.LoadedAt, later.LoadedAt)
			}
			for _, name := range []string{"a", "b"} {
				tl := later.Tiles[name]
				if tl.State != "live" || tl.Badge != "live" || !strings.Contains(tl.Stats, "fps") || tl.Reason != "" {
					t.Errorf("tile %s: %+v, want live with its fps and no reason", name, tl)
				}
			}
			gone := later.Tiles["gone"]
			if gone.Badge != "offline" || !strings.Contains(gone.Reason, "nothing accepts connections") {
				t.Errorf("tile gone: %+v, want offline with the reason", gone)
			}
			if later.Overflow > 0 {
				t.Errorf("the page is %d px wider than the %s viewport", later.Overflow, vp.name)
			}
			screenshot(t, ctx, "dashboard-"+vp.name)
		})
	}

	t.Run("camera page", func(t *testing.T) {
		if _, err := chromedp.Run(ctx, desktop); err != nil {
			t.Fatal(err)
		}
		// WebRTC by default, in the plugin's own player embedded.
		navigate(t, ctx, c.api+"/cameras/a/")
		deadline := time.Now().Add(60 * time.Second)
		var p probe
		for {
			raw := evaluate[string](t, ctx,
				`JSON.stringify((document.querySelector("#player iframe") || {}).contentWindow?.probe || {})`)
			_ = json.Unmarshal([]byte(raw), &p)
			if p.State == "live" && p.FramesDecoded > 5 && p.VideoWidth == 320 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the embedded WebRTC player did not play: probe %+v", p)
			}
			time.Sleep(200 * time.Millisecond)
		}
		screenshot(t, ctx, "camera-webrtc-desktop")

		// MJPEG, chosen by the page's #mjpeg.
		for _, vp := range []struct {
			name string
			size chromedp.Action[chromedp.Void]
		}{{"desktop", desktop}, {"phone", phone}} {
			if _, err := chromedp.Run(ctx, vp.size); err != nil {
				t.Fatal(err)
			}
			navigate(t, ctx, c.api+"/cameras/a/#mjpeg")
			first := waitPlayerImage(t, ctx, 0)
			waitPlayerImage(t, ctx, first)
			urls := evaluate[string](t, ctx,
				`JSON.stringify(Array.from(document.querySelectorAll("input[data-url]")).map(i => i.value))`)
			for _, want := range []string{
				c.api + "/outputs/web/cameras/a/stream.mjpg", c.api + "/outputs/stills/cameras/a/snapshot.jpg",
				c.api + "/outputs/rtc/cameras/a/whep", `ffmpeg -f mjpeg -i \"` + c.api + "/outputs/web/cameras/a/stream.mjpg",
			} {
				if !strings.Contains(urls, want) {
					t.Errorf("camera page's URLs %s lack %s", urls, want)
				}
			}
			if ov, _ := chromedp.Run(ctx, chromedp.Evaluate[int](`document.documentElement.scrollWidth - innerWidth`)); ov > 0 {
				t.Errorf("the camera page is %d px wider than the %s viewport", ov, vp.name)
			}
			screenshot(t, ctx, "camera-mjpeg-"+vp.name)
		}
	})
}

// waitPlayerImage waits until the camera page's player shows a decoded
// picture whose pixels differ from those hashed as not, and returns the
// new hash.
func waitPlayerImage(t testing.TB, ctx context.Context, not uint32) uint32 {
	t.Helper()
	const js = `(() => {
  const img = document.querySelector("#player img");
  if (!img || !img.naturalWidth) return 0;
  const c = document.createElement("canvas");
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const x = c.getContext("2d");
  x.drawImage(img, 0, 0);
  const d = x.getImageData(0, 0, c.width, c.height).data;
  let h = 0;
  for (let i = 0; i < d.length; i += 4) h = (Math.imul(h, 31) + d[i] + d[i + 1] * 7 + d[i + 2] * 13) >>> 0;
  return h || 1;
})()`
	deadline := time.Now().Add(30 * time.Second)
	for {
		h := evaluate[float64](t, ctx, js)
		if h != 0 && uint32(h) != not {
			return uint32(h)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the MJPEG player showed no new picture in 30s")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// proxyConfig is camd with auth (a user, an admin token and a view token
// for camera a) or without, and all three plugins. max_viewers_per_client
// is 2 on the MJPEG output, to see whose viewers the proxy counts.
func proxyConfig(t *testing.T, auth bool) string {
	block := ""
	if auth {
		hash, err := bcrypt.GenerateFromPassword([]byte("proxy-pw-1234"), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		block = fmt.Sprintf(`auth:
  users:
    - {name: pat, password_hash: %q}
  tokens:
    - {name: admin, token: proxy-admin-token-0123456789, scope: admin}
    - {name: view-a, token: proxy-view-a-token-0123456789, cameras: [a]}
`, hash)
	}
	return block + `
cameras:
  - name: a
    source: {type: sim, size: 320x240, fps: 10}
  - name: b
    source: {type: sim, size: 320x240, fps: 10}
outputs:
  - {name: web, plugin: mjpeg, config: {listen: "127.0.0.1:0", max_viewers_per_client: 2}}
  - {name: stills, plugin: snapshot, config: {listen: "127.0.0.1:0"}}
  - {name: rtc, plugin: webrtc, config: {listen: "127.0.0.1:0"}}
`
}

// proxyClient is client with connections from the given loopback
// address, as a second machine's would come from its own.
func proxyClient(client *http.Client, from string) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if t, ok := client.Transport.(*http.Transport); ok {
		tr = t.Clone()
	}
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	tr.DialContext = d.DialContext
	return &http.Client{Transport: tr}
}

// proxyReq does method url with the credential in header (an
// Authorization value) and returns the response, its body read up to a
// little when it is a stream.
func proxyReq(t *testing.T, client *http.Client, method, url, auth string, body string) (*http.Response, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/sdp")
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp, b
}

// TestProxy: every output's HTTP through camd's port at /outputs/<name>/:
// MJPEG streams flush each frame, stills, the plugins' pages, WHEP with a
// real WebRTC client (offer, answer, media, session deleted through the
// rewritten Location); each client's viewers count against its own
// max_viewers_per_client; with auth, credentials are checked per camera
// and passed on, and the dashboard opened with ?token= or a password
// shows its tiles; with TLS, camd and the plugins speak HTTPS.
func TestProxy(t *testing.T) {
	for _, tc := range []struct {
		name      string
		auth, tls bool
	}{{"open", false, false}, {"auth", true, false}, {"auth+https", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			client, tlsBlock := http.DefaultClient, ""
			if tc.tls {
				client, tlsBlock, _ = testCA(t)
			}
			c := startCamd(t, tlsBlock+"\n"+proxyConfig(t, tc.auth))
			c.client = client
			if tc.auth {
				c.token = "proxy-admin-token-0123456789"
			}
			c.waitOutputs(nil)
			// With auth, the user's password goes in every URL below, as
			// VLC or Home Assistant would send it (HTTP Basic).
			scheme, host, _ := strings.Cut(c.api, "://")
			base := c.api + "/outputs/"
			if tc.auth {
				base = scheme + "://pat:proxy-pw-1234@" + host + "/outputs/"
			}

			// MJPEG: frames arrive one by one, as on the plugin's own port.
			v := watchFrom(t, client, base+"web/cameras/a/stream.mjpg")
			v.waitFrames(t, 5, 30*time.Second)

			// A still, the plugins' index pages, and the plugin's 404.
			for _, e := range []struct {
				path, ctype string
				code        int
			}{
				{"stills/cameras/a/snapshot.jpg", "image/jpeg", 200},
				{"web/", "text/html", 200},
				{"stills/", "text/html", 200},
				{"rtc/cameras/a/", "text/html", 200},
				{"web/cameras/nope/stream.mjpg", "text/plain", 404},
				{"nope/", "text/plain", 404},
			} {
				resp, body := proxyReq(t, client, "GET", base+e.path, "", "")
				if resp.StatusCode != e.code || !strings.HasPrefix(resp.Header.Get("Content-Type"), e.ctype) {
					t.Errorf("GET %s: %d %s, want %d %s: %.200s", e.path, resp.StatusCode, resp.Header.Get("Content-Type"), e.code, e.ctype, body)
				}
			}
			noFollow := *client
			noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
			resp, _ := proxyReq(t, &noFollow, "GET", base+"web", "", "")
			if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusMovedPermanently || loc != "web/" {
				t.Errorf("GET /outputs/web: %d to %q, want a relative redirect to web/", resp.StatusCode, loc)
			}

			// WHEP with pion: the session's Location stays under /outputs/rtc/.
			w := whepThrough(t, client, base+"rtc/cameras/a/whep")
			if !strings.HasPrefix(w.location, "/outputs/rtc/cameras/a/whep/") {
				t.Errorf("WHEP Location %q, want it under /outputs/rtc/cameras/a/whep/", w.location)
			}
			w.waitPackets(t, 20, 60*time.Second)
			resp, body := proxyReq(t, client, "DELETE", strings.TrimSuffix(base, "/outputs/")+w.location, "", "")
			if resp.StatusCode/100 != 2 {
				t.Errorf("DELETE %s: %d %s", w.location, resp.StatusCode, body)
			}

			// Each client's own max_viewers_per_client (2): a third stream
			// from this client is refused, one from another is not.
			vb := watchFrom(t, client, base+"web/cameras/b/stream.mjpg")
			vb.waitFrames(t, 1, 30*time.Second)
			if resp, body := proxyReq(t, client, "GET", base+"web/cameras/b/stream.mjpg", "", ""); resp.StatusCode != http.StatusTooManyRequests {
				t.Errorf("third stream from one client: %d %.200s, want 429", resp.StatusCode, body)
			}
			watchFrom(t, proxyClient(client, "127.0.0.2"), base+"web/cameras/b/stream.mjpg").waitFrames(t, 1, 30*time.Second)
			// This client's streams end: its slots are free again.
			for _, v := range []*viewer{v, vb} {
				v.cancel()
				<-v.done
			}

			if !tc.auth {
				return
			}
			base = c.api + "/outputs/"
			other := proxyClient(client, "127.0.0.3") // its failed logins must not lock out the others
			for _, e := range []struct {
				name, method, path, auth string
				code                     int
			}{
				{"no credential", "GET", "stills/cameras/a/snapshot.jpg", "", 401},
				{"no credential, WHEP", "POST", "rtc/cameras/a/whep", "", 401},
				{"no credential, page", "GET", "web/", "", 401},
				{"wrong password", "GET", "stills/cameras/a/snapshot.jpg", "Basic " + basicAuth("pat", "nope"), 401},
				{"view token, its camera", "GET", "stills/cameras/a/snapshot.jpg", "Bearer proxy-view-a-token-0123456789", 200},
				{"view token, another camera", "GET", "stills/cameras/b/snapshot.jpg", "Bearer proxy-view-a-token-0123456789", 403},
				{"view token, another camera's WHEP", "POST", "rtc/cameras/b/whep", "Bearer proxy-view-a-token-0123456789", 403},
				{"?token=", "GET", "stills/cameras/a/snapshot.jpg?token=proxy-view-a-token-0123456789", "", 200},
				{"admin token", "GET", "stills/cameras/b/snapshot.jpg", "Bearer proxy-admin-token-0123456789", 200},
			} {
				offer := ""
				if e.method == "POST" {
					offer = "v=0\r\n"
				}
				resp, body := proxyReq(t, other, e.method, base+e.path, e.auth, offer)
				if resp.StatusCode != e.code {
					t.Errorf("%s: %s %s: %d %.200s, want %d", e.name, e.method, e.path, resp.StatusCode, body, e.code)
				}
			}
			// The API itself still wants the admin scope.
			if resp, _ := proxyReq(t, client, "GET", c.api+"/api/status", "Bearer proxy-view-a-token-0123456789", ""); resp.StatusCode != http.StatusForbidden {
				t.Errorf("/api/status with a view token: %d, want 403", resp.StatusCode)
			}
			if tc.tls {
				return
			}

			// A browser opening the dashboard with ?token= sees every tile.
			ctx := newBrowser(t)
			if _, err := chromedp.Run(ctx, desktop); err != nil {
				t.Fatal(err)
			}
			navigate(t, ctx, c.api+"/?token=proxy-admin-token-0123456789")
			waitPage(t, ctx, 60*time.Second, "decoded tiles with a token", func(p pageState) bool {
				return len(p.Tiles) == 2 && p.Tiles["a"].Width > 0 && p.Tiles["b"].Width > 0 && p.Polls > 0
			})

			navigate(t, ctx, "about:blank") // its two streams end: max_viewers_per_client is 2

			// A person logs in once, in the browser's own prompt: the
			// dashboard's tiles, its numbers and a camera page's player
			// (all through /outputs/) never ask again.
			ctx = newBrowser(t)
			if _, err := chromedp.Run(ctx, desktop); err != nil {
				t.Fatal(err)
			}
			prompts := answerLogins(t, ctx, "pat", "proxy-pw-1234")
			navigate(t, ctx, c.api+"/")
			waitPage(t, ctx, 60*time.Second, "decoded tiles after logging in", func(p pageState) bool {
				return len(p.Tiles) == 2 && p.Tiles["a"].Width > 0 && p.Tiles["b"].Width > 0 && p.Polls >= 3
			})
			navigate(t, ctx, c.api+"/cameras/b/#mjpeg")
			waitPlayerImage(t, ctx, 0)
			if n := prompts.Load(); n != 1 {
				t.Errorf("the browser asked for a password %d times, want once", n)
			}
		})
	}
}

// answerLogins answers the browser's login prompts (HTTP Basic
// challenges) in the tab of ctx with user and pw, as a person would once,
// and counts them. Every request of the tab passes through DevTools'
// Fetch domain for that.
func answerLogins(t *testing.T, ctx context.Context, user, pw string) *atomic.Int32 {
	t.Helper()
	var prompts atomic.Int32
	events := make(chan any, 4096)
	hctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	if err := chromedp.Listen(hctx, func(ev any) {
		switch ev.(type) {
		case *fetch.EventRequestPaused, *fetch.EventAuthRequired:
			select {
			case events <- ev: // handled below: a listener must not call the browser
			default:
			}
		}
	}); err != nil {
		t.Fatal(err)
	}
	answer := func(f func(ctx context.Context, tg *chromedp.Target) error) {
		if _, err := chromedp.Run(hctx, chromedp.Func(f)); err != nil && hctx.Err() == nil {
			t.Logf("answering the browser: %v", err)
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-hctx.Done():
				return
			case ev := <-events:
				switch e := ev.(type) {
				case *fetch.EventRequestPaused:
					answer(func(ctx context.Context, tg *chromedp.Target) error {
						_, err := cdp.Call(ctx, tg, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: e.RequestID})
						return err
					})
				case *fetch.EventAuthRequired:
					prompts.Add(1)
					answer(func(ctx context.Context, tg *chromedp.Target) error {
						_, err := cdp.Call(ctx, tg, fetch.ContinueWithAuth, fetch.ContinueWithAuthParams{RequestID: e.RequestID,
							AuthChallengeResponse: &fetch.AuthChallengeResponse{Response: fetch.AuthChallengeResponseResponseProvideCredentials, Username: user, Password: pw}})
						return err
					})
				}
			}
		}
	}()
	handle := true
	if _, err := chromedp.Run(ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, fetch.Enable, fetch.EnableParams{HandleAuthRequests: &handle})
		return err
	})); err != nil {
		t.Fatal(err)
	}
	return &prompts
}

func basicAuth(user, pw string) string {
	req, _ := http.NewRequest("GET", "http://x/", nil)
	req.SetBasicAuth(user, pw)
	return strings.TrimPrefix(req.Header.Get("Authorization"), "Basic ")
}

// watchFrom is watch with the given client: it reads an MJPEG stream and
// records each part's X-Frame-Seq until the test ends.
func watchFrom(t *testing.T, client *http.Client, url string) *viewer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		cancel()
		t.Fatalf("GET %s: %s: %s", url, resp.Status, body)
	}
	v := &viewer{done: make(chan struct{}), cancel: cancel}
	t.Cleanup(func() { cancel(); <-v.done })
	go func() {
		defer close(v.done)
		defer resp.Body.Close()
		r := device.NewMultipartReader(resp.Body, "123456789000000000000987654321", 16<<20)
		for {
			hdr, body, err := r.NextPart()
			if err == nil {
				_, _, _, err = device.CheckJPEG(body, 0)
			}
			v.mu.Lock()
			if err != nil {
				v.err = err
				v.mu.Unlock()
				return
			}
			seq, _ := strconv.ParseUint(hdr.Get("X-Frame-Seq"), 10, 64)
			v.seqs, v.times, v.sizes = append(v.seqs, seq), append(v.times, time.Now()), append(v.sizes, len(body))
			v.mu.Unlock()
		}
	}()
	return v
}

// whepSession is a pion WebRTC client that played a camera over WHEP.
type whepSession struct {
	location string
	mu       sync.Mutex
	packets  int
}

// whepThrough offers to receive video at url and counts the RTP packets
// that arrive.
func whepThrough(t *testing.T, client *http.Client, url string) *whepSession {
	t.Helper()
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	s := &whepSession{}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			if _, _, err := tr.ReadRTP(); err != nil {
				return
			}
			s.mu.Lock()
			s.packets++
			s.mu.Unlock()
		}
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	resp, body := proxyReq(t, client, "POST", url, "", pc.LocalDescription().SDP)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("WHEP POST %s: %d %s", url, resp.StatusCode, body)
	}
	s.location = resp.Header.Get("Location")
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(body)}); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *whepSession) waitPackets(t *testing.T, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		s.mu.Lock()
		got := s.packets
		s.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("WHEP through the proxy: %d RTP packets in %v, want %d", got, within, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// BenchmarkProxyMJPEG measures what camd's port costs an MJPEG viewer:
// 50 viewers of a 640x480 camera at 15 fps, on the plugin's own port and
// then through /outputs/, in alternating rounds. The figure is CPU time
// of camd and the plugin (from /proc) per frame delivered to a viewer
// (the plugin's own count of frames sent); the test's viewers only read
// and discard.
func BenchmarkProxyMJPEG(b *testing.B) {
	const viewers = 50
	c := startCamd(b, `
cameras:
  - name: cam
    source: {type: sim, size: 640x480, fps: 15, quality: 80}
outputs:
  - {name: web, plugin: mjpeg, config: {listen: "127.0.0.1:0", max_viewers: 200, max_viewers_per_client: 200}}
`)
	s := c.waitOutputs(nil)
	direct := streamURL(s, "web", "cam")
	proxied := c.api + "/outputs/web/cameras/cam/stream.mjpg"
	camdPID, pluginPID := c.cmd.Process.Pid, s.Outputs[0].PID

	sent := func() uint64 {
		var st struct {
			Outputs []struct {
				PluginStatus struct {
					Cameras map[string]struct{ Sent uint64 } `json:"cameras"`
				} `json:"plugin_status"`
			} `json:"outputs"`
		}
		resp, err := http.Get(c.api + "/api/status")
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			b.Fatal(err)
		}
		return st.Outputs[0].PluginStatus.Cameras["cam"].Sent
	}
	// round runs the viewers on url and returns the CPU time of camd and
	// the plugin per delivered frame, and the frames per second delivered.
	var bytes atomic.Int64 // read by the viewers, for the size of a frame
	var frameBytes float64
	round := func(url string) (perFrame time.Duration, fps float64) {
		start := sent()
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for range viewers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return
				}
				defer resp.Body.Close()
				n, _ := io.Copy(io.Discard, resp.Body)
				bytes.Add(n)
			}()
		}
		time.Sleep(3 * time.Second) // everyone connected and streaming
		n0, c0, t0 := sent(), procCPU(b, camdPID)+procCPU(b, pluginPID), time.Now()
		time.Sleep(10 * time.Second)
		n1, c1, t1 := sent(), procCPU(b, camdPID)+procCPU(b, pluginPID), time.Now()
		cancel()
		wg.Wait()
		frameBytes = float64(bytes.Swap(0)) / float64(sent()-start)
		frames := n1 - n0
		if frames == 0 {
			b.Fatalf("no frames delivered to %s", url)
		}
		return (c1 - c0) / time.Duration(frames), float64(frames) / t1.Sub(t0).Seconds()
	}
	// Rounds alternate, and the proxy's cost is the median of each pair's
	// difference: a busy machine's load drifts between rounds.
	var d, p, diff []float64
	for i := 0; i < max(b.N, 3); i++ {
		pd, fd := round(direct)
		pp, fp := round(proxied)
		b.Logf("round %d: own port %v/frame at %.0f frames/s, through camd %v/frame at %.0f frames/s", i, pd, fd, pp, fp)
		d, p = append(d, float64(pd.Microseconds())), append(p, float64(pp.Microseconds()))
		diff = append(diff, float64((pp - pd).Microseconds()))
	}
	med := func(v []float64) float64 { slices.Sort(v); return v[len(v)/2] }
	cost := med(diff)
	b.ReportMetric(med(d), "µs-cpu/frame-own-port")
	b.ReportMetric(med(p), "µs-cpu/frame-via-camd")
	b.ReportMetric(cost, "µs-cpu/frame-proxy")
	b.ReportMetric(cost*15/1e4, "%cpu/viewer-proxy@15fps")
	b.ReportMetric(frameBytes/1024, "KiB/frame")
}
