package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// startHostsim runs the real firmware under CPython (firmware/hostsim.py)
// on port and returns its process.
func startHostsim(t *testing.T, port int) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("python3", "../firmware/hostsim.py", "--port", strconv.Itoa(port), "--fps", "20", "--size", "320x240")
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
func TestESP32FirmwareThroughCamd(t *testing.T) {
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
