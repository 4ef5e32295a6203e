package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"golang.org/x/crypto/bcrypt"

	"github.com/camd/camd/internal/testcert"
)

const (
	adminToken = "ops-admin-token-0123456789abcdef"
	viewAToken = "ha-view-token-a-0123456789abcdef" // camera a only
	alicePW    = "alice-password-123"
)

// securedConfig is camd with auth, all three plugins and two cameras.
// allowed is the one origin (besides none) whose pages may read responses.
// The admin token comes from camd's environment, as with systemd's
// EnvironmentFile.
func securedConfig(t *testing.T, allowed, tlsBlock string) string {
	t.Setenv("CAMD_E2E_ADMIN_TOKEN", adminToken)
	hash, err := bcrypt.GenerateFromPassword([]byte(alicePW), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf(`%s
auth:
  users:
    - {name: alice, password_hash: %q}
  tokens:
    - {name: ops, token: "${CAMD_E2E_ADMIN_TOKEN}", scope: admin}
    - {name: ha, token: %s, cameras: [a]}
cors:
  allow_origins: [%q]
cameras:
  - name: a
    source: {type: sim, size: 320x240, fps: 10}
  - name: b
    source: {type: sim, size: 320x240, fps: 10}
outputs:
  - {name: web, plugin: mjpeg, config: {listen: "127.0.0.1:0"}}
  - {name: stills, plugin: snapshot, config: {listen: "127.0.0.1:0"}}
  - {name: rtc, plugin: webrtc, config: {listen: "127.0.0.1:0"}}
`, tlsBlock, hash, viewAToken, allowed)
}

// cred is one way of presenting (or not) a credential.
type cred struct {
	name  string
	apply func(r *http.Request)
}

var (
	noCred    = cred{"none", func(*http.Request) {}}
	basicCred = cred{"basic", func(r *http.Request) { r.SetBasicAuth("alice", alicePW) }}
	wrongPW   = cred{"wrong password", func(r *http.Request) { r.SetBasicAuth("alice", "nope") }}
	adminCred = cred{"admin bearer", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+adminToken) }}
	viewCred  = cred{"view-a bearer", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+viewAToken) }}
	queryCred = cred{"view-a ?token=", func(r *http.Request) {
		q := r.URL.Query()
		q.Set("token", viewAToken)
		r.URL.RawQuery = q.Encode()
	}}
)

// status code of a request, reading at most a little of a stream.
func code(t *testing.T, client *http.Client, method, url string, c cred, host string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var body io.Reader
	if method == "POST" {
		body = strings.NewReader("v=0\r\n")
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if method == "POST" {
		req.Header.Set("Content-Type", "application/sdp")
	}
	if host != "" {
		req.Host = host
	}
	c.apply(req)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s (%s): %v", method, url, c.name, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// The matrix of who gets what, against a real camd with all three
// plugins, over HTTP and over HTTPS with a test CA.
func TestAuthMatrix(t *testing.T) {
	for _, scheme := range []string{"http", "https"} {
		t.Run(scheme, func(t *testing.T) {
			client, tlsBlock, caFile := http.DefaultClient, "", ""
			if scheme == "https" {
				client, tlsBlock, caFile = testCA(t)
			}
			other := httptest.NewServer(http.HandlerFunc(corsPage))
			defer other.Close()
			allowed := httptest.NewServer(http.HandlerFunc(corsPage))
			defer allowed.Close()

			c := startCamd(t, securedConfig(t, allowed.URL, tlsBlock))
			c.client, c.token = client, adminToken
			s := c.waitOutputs(nil)
			if !strings.HasPrefix(c.api, scheme+"://") {
				t.Fatalf("api at %s, want %s", c.api, scheme)
			}
			web, stills, rtc := outputURL(s, "web", "/"), outputURL(s, "stills", "/"), outputURL(s, "rtc", "/")
			// Plugins get hashes of the credentials, not the environment
			// variable that holds one.
			for _, o := range s.Outputs {
				env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", o.PID))
				if err != nil {
					t.Fatalf("output %s: %v", o.Name, err)
				}
				if bytes.Contains(env, []byte(adminToken)) {
					t.Errorf("output %s (pid %d) has the admin token in its environment", o.Name, o.PID)
				}
			}
			type ep struct{ method, url string }
			// The WebRTC player page is public: it holds no video, and
			// without a token it explains how to get one (checked below).
			camA := []ep{
				{"GET", web + "cameras/a/stream.mjpg"}, {"GET", stills + "cameras/a/snapshot.jpg"},
				{"POST", rtc + "cameras/a/whep"},
			}
			camB := []ep{
				{"GET", web + "cameras/b/stream.mjpg"}, {"GET", stills + "cameras/b/snapshot.jpg"},
				{"POST", rtc + "cameras/b/whep"},
			}
			pages := []ep{{"GET", web}, {"GET", stills}, {"GET", rtc}}
			api := []ep{{"GET", c.api + "/api/status"}, {"GET", c.api + "/"}, {"POST", c.api + "/api/reload"}}

			all := append(append(append(append([]ep{}, camA...), camB...), pages...), api...)
			for _, e := range all {
				if got := code(t, client, e.method, e.url, noCred, ""); got != http.StatusUnauthorized {
					t.Errorf("%s %s without credentials: %d, want 401", e.method, e.url, got)
				}
				if got := code(t, client, e.method, e.url, wrongPW, ""); got != http.StatusUnauthorized && got != http.StatusTooManyRequests {
					t.Errorf("%s %s with a wrong password: %d, want 401", e.method, e.url, got)
				}
			}
			if got := code(t, client, "GET", c.api+"/healthz", noCred, ""); got != http.StatusOK {
				t.Errorf("/healthz without credentials: %d, want 200", got)
			}
			// What each credential may do. WHEP posts an offer with no
			// video: 400 or 406 means it got past authentication.
			ok := func(e ep) []int {
				if e.method == "POST" && strings.HasSuffix(e.url, "/whep") {
					return []int{http.StatusBadRequest, http.StatusNotAcceptable}
				}
				return []int{http.StatusOK}
			}
			check := func(c cred, eps []ep, want func(ep) []int) {
				for _, e := range eps {
					got := code(t, client, e.method, e.url, c, "")
					if w := want(e); !containsInt(w, got) {
						t.Errorf("%s %s with %s: %d, want %v", e.method, e.url, c.name, got, w)
					}
				}
			}
			forbidden := func(ep) []int { return []int{http.StatusForbidden} }
			reloadOK := func(e ep) []int {
				if strings.HasSuffix(e.url, "/api/reload") {
					return []int{http.StatusOK}
				}
				return ok(e)
			}
			for _, cr := range []cred{basicCred, adminCred} {
				check(cr, append(append(append(camA, camB...), pages...), api[:2]...), ok)
			}
			check(adminCred, api[2:], reloadOK)
			for _, cr := range []cred{viewCred, queryCred} {
				check(cr, camA, ok)
				check(cr, camB, forbidden)
				check(cr, api, forbidden)
			}

			// DNS rebinding: the API answers only to names it knows.
			if got := code(t, client, "GET", c.api+"/api/status", adminCred, "evil.example:80"); got != http.StatusMisdirectedRequest {
				t.Errorf("API with Host evil.example: %d, want 421", got)
			}

			// ffmpeg reads the stream with the token in the URL.
			ffmpegReads(t, web+"cameras/a/stream.mjpg?token="+viewAToken, caFile)

			// Chromium: <img> with ?token=, the player page with and
			// without a token, and CORS by origin.
			browser(t, scheme, web, stills, rtc, other.URL, allowed.URL)
		})
	}
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// corsPage is a page on another origin that tries to read a still.
func corsPage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html")
	io.WriteString(w, `<!doctype html><title>elsewhere</title>`)
}

func ffmpegReads(t *testing.T, url, caFile string) {
	t.Helper()
	args := []string{"-v", "error"}
	if caFile != "" {
		args = append(args, "-tls_verify", "1", "-ca_file", caFile)
	}
	args = append(args, "-f", "mjpeg", "-i", url, "-frames:v", "5", "-f", "null", "-")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ffmpeg", args...).CombinedOutput()
	if err != nil {
		t.Errorf("ffmpeg with ?token=: %v\n%s", err, out)
	}
}

func browser(t *testing.T, scheme, web, stills, rtc, other, allowed string) {
	t.Helper()
	ctx := newBrowser(t, chromedp.Flag("ignore-certificate-errors", scheme == "https"))
	tctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	nav := func(url string) {
		t.Helper()
		if _, err := chromedp.Run(tctx, chromedp.Navigate(url)); err != nil {
			t.Fatalf("navigate %s: %v", url, err)
		}
	}

	// An <img> with ?token= on some page shows the stream. The script
	// waits in the page itself for the picture, and the whole attempt is
	// repeated if Chromium swaps the page's script context meanwhile
	// ("Cannot find context with specified id"), which a loaded machine
	// makes likely right after a navigation.
	img := fmt.Sprintf(`new Promise(res => {
		const i = document.createElement("img"); i.src = %q; document.body.appendChild(i);
		const t0 = Date.now();
		const tick = () => (i.naturalWidth > 0 || Date.now() - t0 > 15000) ? res(i.naturalWidth) : setTimeout(tick, 100);
		tick();
	})`, web+"cameras/a/stream.mjpg?token="+viewAToken)
	width, err := evalAt[int](tctx, nav, other, img)
	if err != nil || width != 320 {
		t.Errorf("<img> of the stream with ?token=: width %d, %v", width, err)
	}

	// The player page plays with a token...
	nav(rtc + "cameras/a/?token=" + viewAToken)
	waitProbe(t, tctx, 20*time.Second, "playing with a token", func(p probe) bool { return p.FramesDecoded > 0 })
	// ...and says why not without one.
	nav(rtc + "cameras/a/")
	text, err := chromedp.Run(tctx, chromedp.Poll[string](`document.body && /token/i.test(document.body.innerText) && document.body.innerText`, chromedp.WithPollingTimeout(10*time.Second)))
	if err != nil {
		t.Errorf("player page without a token: no message about the token (%v)", err)
	}
	t.Logf("without a token the player says: %q", text)

	// A page from another origin cannot read a still; the allowed origin can.
	still := stills + "cameras/a/snapshot.jpg?token=" + viewAToken
	for _, tc := range []struct{ origin, want string }{{other, "blocked"}, {allowed, "read"}} {
		got, err := evalAt[string](tctx, nav, tc.origin,
			fmt.Sprintf(`fetch(%q).then(r => r.blob()).then(() => "read", () => "blocked")`, still))
		if err != nil || got != tc.want {
			t.Errorf("fetch of a still from %s: %q (%v), want %q", tc.origin, got, err, tc.want)
		}
	}
}

// evalAt opens page and evaluates js there (awaiting a promise), up to
// three times while the evaluation fails: a navigation can leave the tab
// between script contexts for a moment.
func evalAt[T any](ctx context.Context, nav func(string), page, js string) (T, error) {
	var v T
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		nav(page)
		if v, err = chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise)); err == nil {
			return v, nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return v, err
}

// testCA makes a CA and a certificate for 127.0.0.1 signed by it, and
// returns a client trusting the CA, the config's tls block and the CA's
// file.
func testCA(t *testing.T) (*http.Client, string, string) {
	t.Helper()
	dir := t.TempDir()
	ca := testcert.New(t, "camd test CA")
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	cert, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	ca.Issue(t, "127.0.0.1", "localhost").Write(t, cert, keyFile)
	return ca.Client(), fmt.Sprintf("tls: {cert: %q, key: %q}", cert, keyFile), caFile
}
