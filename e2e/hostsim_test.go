package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startHostsim runs the real firmware under CPython (firmware/hostsim.py)
// on port and returns its process. env adds settings the way the board's
// settings.toml would ("CAMSERVER_TOKEN=...").
func startHostsim(t *testing.T, port int, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("python3", "../firmware/hostsim.py", "--port", strconv.Itoa(port), "--fps", "20", "--size", "320x240")
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/health", port)); err == nil {
			resp.Body.Close()
			return cmd
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("hostsim did not start")
	return nil
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func boardStatus(t *testing.T, port int) map[string]any {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/status", port))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	st := map[string]any{}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// camd's esp32 source against the real firmware (on the host): frames flow
// through camd to a viewer over one connection to the board, in both
// modes; the board goes away and comes back, and the viewer stays.
func TestHostsimThroughCamd(t *testing.T) {
	for _, mode := range []string{"capture", "stream"} {
		t.Run(mode, func(t *testing.T) {
			port := freePort(t)
			board := startHostsim(t, port)
			c := startCamd(t, fmt.Sprintf(`
cameras:
  - name: bench
    source: {type: esp32, url: "http://127.0.0.1:%d", mode: %s, fps: 0}
outputs:
  - {name: web, plugin: mjpeg, config: {listen: "127.0.0.1:0"}}
`, port, mode))
			v := watch(t, streamURL(c.waitOutputs(nil), "web", "bench"))
			v.waitFrames(t, 20, 15*time.Second)
			// camd holds one connection; this status request is the other.
			if n := boardStatus(t, port)["clients"].(float64); n != 2 {
				t.Fatalf("board has %v clients, want camd's one plus ours", n)
			}
			board.Process.Kill()
			board.Wait()
			n := v.count()
			board = startHostsim(t, port)
			v.waitFrames(t, n+10, 20*time.Second)
			v.mu.Lock()
			defer v.mu.Unlock()
			if v.err != nil {
				t.Fatalf("viewer lost its stream while the board was away: %v", v.err)
			}
		})
	}
}

// boardGet is a GET to the board itself, with a bearer token if given.
func boardGet(t *testing.T, port int, path, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d%s", port, path), nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// A board protected by CAMSERVER_TOKEN: camd's esp32 source sends the
// token: key as a bearer header and reads frames, in both modes; with the
// wrong token it gets none. The token never shows in camd's /api/status
// or its logs.
func TestHostsimTokenThroughCamd(t *testing.T) {
	token := "board-secret-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	port := freePort(t)
	startHostsim(t, port, "CAMSERVER_TOKEN="+token)
	// The board really wants it (else this test proves nothing).
	if code, _ := boardGet(t, port, "/capture", ""); code != http.StatusUnauthorized {
		t.Fatalf("board without the token: %d, want 401", code)
	}
	if code, _ := boardGet(t, port, "/capture", token); code != http.StatusOK {
		t.Fatalf("board with the token: %d, want 200", code)
	}
	noLeak := func(t *testing.T, c *camd, secrets ...string) {
		t.Helper()
		st, logs := string(c.apiGet("/api/status")), c.logs.String()
		for _, s := range secrets {
			if strings.Contains(st, s) {
				t.Errorf("camd's /api/status shows the token: %s", st)
			}
			if strings.Contains(logs, s) {
				t.Errorf("camd's log shows the token:\n%s", logs)
			}
		}
	}
	for _, mode := range []string{"capture", "stream"} {
		t.Run(mode, func(t *testing.T) {
			c := startCamd(t, fmt.Sprintf(`
cameras:
  - name: locked
    source: {type: esp32, url: "http://127.0.0.1:%d", mode: %s, fps: 0, token: %q}
outputs:
  - {name: web, plugin: mjpeg, config: {listen: "127.0.0.1:0"}}
`, port, mode, token))
			v := watch(t, streamURL(c.waitOutputs(nil), "web", "locked"))
			v.waitFrames(t, 20, 15*time.Second)
			// Frames from the board, not camd's offline placeholders.
			for _, cam := range c.status().Cameras {
				if cam.Name == "locked" && cam.Frames < 20 {
					t.Errorf("camd read %d frames from the board, want 20 or more", cam.Frames)
				}
			}
			noLeak(t, c, token)
		})
	}
	t.Run("wrong token", func(t *testing.T) {
		wrong := "not-the-" + token
		c := startCamd(t, fmt.Sprintf(`
cameras:
  - name: locked
    source: {type: esp32, url: "http://127.0.0.1:%d", mode: capture, fps: 0, token: %q}
outputs:
  - {name: web, plugin: mjpeg, config: {listen: "127.0.0.1:0"}}
`, port, wrong))
		c.waitOutputs(nil)
		// camd tries, is refused, and says so.
		waitFor(t, 20*time.Second, func() bool { return strings.Contains(string(c.apiGet("/api/status")), "401") })
		for _, cam := range c.status().Cameras {
			if cam.Name == "locked" && cam.Frames > 0 {
				t.Errorf("camd read %d frames with the wrong token", cam.Frames)
			}
		}
		noLeak(t, c, wrong, token)
	})
}
