package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// camdCmd runs `camd <cmd> -config <path>` and returns its output and exit
// code.
func camdCmd(t *testing.T, cmd, path string, timeout time.Duration) (string, int, time.Duration) {
	t.Helper()
	c := exec.Command(filepath.Join(binDir, "camd"), cmd, "-config", path)
	start := time.Now()
	timer := time.AfterFunc(timeout, func() { c.Process.Kill() })
	defer timer.Stop()
	out, err := c.CombinedOutput()
	took := time.Since(start)
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code, took
}

// Broken setups are refused, by `camd validate` and by `camd run` before
// it serves anything, with every problem at its file:line and key in
// plain words.
func TestBrokenConfigsAreRefused(t *testing.T) {
	// A port some other program holds.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyAddr := busy.Addr().String()
	api := freeAddr(t)

	for _, tc := range []struct {
		name string
		body string // after the shared plugin_dir line
		want []string
	}{{
		name: "two outputs on one port",
		body: `cameras: [{name: sim, source: {type: sim}}]
outputs:
  - name: one
    plugin: mjpeg
    config: {listen: 127.0.0.1:18481}
  - name: two
    plugin: snapshot
    config:
      listen: 0.0.0.0:18481
`,
		want: []string{`c.yaml:10: outputs[1].config.listen: 0.0.0.0:18481 is already taken by output "one"`},
	}, {
		name: "output on camd's API port",
		body: fmt.Sprintf(`http: {listen: %s}
cameras: [{name: sim, source: {type: sim}}]
outputs:
  - name: web
    plugin: mjpeg
    config:
      listen: %s
`, api, api),
		want: []string{fmt.Sprintf(`c.yaml:8: outputs[0].config.listen: %s is already taken by camd's API (http.listen)`, api)},
	}, {
		name: "port in use by another program",
		body: fmt.Sprintf(`cameras: [{name: sim, source: {type: sim}}]
outputs:
  - name: web
    plugin: mjpeg
    config:
      listen: %s
`, busyAddr),
		want: []string{fmt.Sprintf(`c.yaml:7: outputs[0].config.listen: cannot listen on %s: bind: address already in use`, busyAddr)},
	}, {
		name: "missing plugin binary",
		body: `cameras: [{name: sim, source: {type: sim}}]
outputs:
  - name: gone
    plugin: nosuch
`,
		want: []string{`c.yaml:5: outputs[0].plugin: output "gone": plugin binary ` + binDir + `/camd-plugin-nosuch does not exist (run make build?)`},
	}, {
		name: "sha256 mismatch",
		body: `cameras: [{name: sim, source: {type: sim}}]
outputs:
  - name: pinned
    plugin: mjpeg
    sha256: 0000000000000000000000000000000000000000000000000000000000000000
    config: {listen: 127.0.0.1:0}
`,
		want: []string{`c.yaml:6: outputs[0].sha256: output "pinned": plugin binary ` + binDir + `/camd-plugin-mjpeg: its sha256 does not match the pinned value`},
	}, {
		name: "plugin keys",
		body: `cameras: [{name: sim, source: {type: sim}}]
outputs:
  - name: web
    plugin: mjpeg
    config:
      listen: 127.0.0.1:0
      max_viewers: 0
      colour: red
`,
		want: []string{
			"c.yaml:8: outputs[0].config.max_viewers: must be at least 1",
			"c.yaml:9: outputs[0].config.colour: unknown key",
		},
	}, {
		name: "a plugin open to the network without auth",
		body: `cameras: [{name: sim, source: {type: sim}}]
outputs:
  - name: web
    plugin: mjpeg
    config:
      listen: 0.0.0.0:0
`,
		want: []string{"c.yaml:7: outputs[0].config.listen: 0.0.0.0:0 is reachable from other machines, but camd has no auth configured: add an auth block with users or tokens (see README: Exposing camd on your network), or set auth: {allow_anonymous: true} to serve everyone on your network"},
	}, {
		name: "camd's API open to the network without auth",
		body: `http: {listen: "0.0.0.0:0"}
cameras: [{name: sim, source: {type: sim}}]
`,
		want: []string{"c.yaml:2: http.listen: 0.0.0.0:0 is reachable from other machines, but camd has no auth configured"},
	}, {
		name: "every camera error, not the first",
		body: `cameras:
  - name: one
    source: {type: esp32, url: "ftp://x", mode: sideways, fps: 999}
  - name: two
    source: {type: sim, size: huge}
`,
		want: []string{
			`c.yaml:4: cameras[0].source.url: "ftp://x": want an http:// or https:// URL`,
			`c.yaml:4: cameras[0].source.mode: unknown mode "sideways"`,
			`c.yaml:4: cameras[0].source.fps: want 0 to 240`,
			`c.yaml:6: cameras[1].source.size: invalid size "huge"`,
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(path, []byte("plugin_dir: "+binDir+"\n"+tc.body), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, cmd := range []string{"validate", "run"} {
				out, code, took := camdCmd(t, cmd, path, 20*time.Second)
				if code == 0 {
					t.Fatalf("camd %s accepted it:\n%s", cmd, out)
				}
				for _, w := range tc.want {
					if !strings.Contains(out, w) {
						t.Errorf("camd %s output lacks %q:\n%s", cmd, w, out)
					}
				}
				if strings.Contains(out, "rpc error") || strings.Contains(out, "camd running") {
					t.Errorf("camd %s: gRPC wrapping or a start in the output:\n%s", cmd, out)
				}
				if cmd == "run" && took > 2*time.Second {
					t.Errorf("camd run took %v to refuse; want within 2s", took)
				}
				t.Logf("camd %s refused in %v", cmd, took.Round(time.Millisecond))
			}
		})
	}
}

// freeAddr returns a 127.0.0.1 address with a port nothing listens on.
func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// No secret from a camera's config appears in /api/status, in camd's logs
// (its own and its plugins'), or in error texts.
func TestSecretsStayHidden(t *testing.T) {
	secrets := []string{"hunter22pw", "qs-token-77", "hdr-token-42"}
	// A board that refuses everyone: the errors it causes quote the URL.
	dead := freeAddr(t)
	body := fmt.Sprintf(`
cameras:
  - name: locked
    source: {type: esp32, url: "http://admin:hunter22pw@%s/cam?token=qs-token-77", token: hdr-token-42, mode: stream}
  - name: sim
    source: {type: sim, size: 160x120, fps: 5}
outputs:
  - name: web
    plugin: mjpeg
    config: {listen: 127.0.0.1:0}
`, dead)
	c := startCamd(t, body)
	c.waitOutputs(nil)
	// Wait for the camera's failure to reach the log and status, and the
	// placeholder (which quotes the error) to be drawn.
	deadline := time.Now().Add(15 * time.Second)
	// (The login goes as a header, so errors quote the URL without it.)
	for !strings.Contains(c.logs.String(), "token=***") && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(3 * time.Second)
	resp := get(t, c.api+"/api/status")
	page := get(t, c.api+"/")

	// And the same config with an error in it.
	bad := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(bad, []byte(strings.Replace("plugin_dir: "+binDir+"\n"+body, "http://admin", "ftp://admin", 1)), 0o644)
	vout, code, _ := camdCmd(t, "validate", bad, 20*time.Second)
	if code == 0 {
		t.Fatalf("validate accepted an ftp URL:\n%s", vout)
	}
	for what, text := range map[string]string{"/api/status": resp, "status page": page, "logs": c.logs.String(), "validate": vout} {
		for _, sec := range secrets {
			if strings.Contains(text, sec) {
				t.Errorf("%s shows the secret %q:\n%s", what, sec, text)
			}
		}
	}
	if !strings.Contains(c.logs.String(), "token=***") {
		t.Errorf("the camera's errors never reached the log (nothing was checked):\n%s", c.logs.String())
	}
}

// get returns the body of a GET of url.
func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
