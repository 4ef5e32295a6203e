package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/camd/camd/device"
)

// binDir holds the binaries built once for all tests.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "camd-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	if err := build(dir); err != nil {
		fmt.Fprintln(os.Stderr, "build:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// build compiles camd and every plugin into dir, named as make build does.
func build(dir string) error {
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "camd"), "./cmd/camd")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%v\n%s", err, out)
	}
	plugins, _ := filepath.Glob("../plugins/*")
	for _, p := range plugins {
		name := filepath.Base(p)
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "camd-plugin-"+name), "./plugins/"+name)
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("plugin %s: %v\n%s", name, err, out)
		}
	}
	return nil
}

// camd is a running daemon.
type camd struct {
	t    testing.TB
	path string // its config file
	// client and token are how the test talks to camd's API: with auth
	// configured, token is an admin token; with TLS, client trusts the
	// test CA.
	client *http.Client
	token  string
	cmd    *exec.Cmd
	api    string // http://127.0.0.1:PORT
	logs   *logBuffer
	done   chan struct{}
	err    error
}

type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var apiRE = regexp.MustCompile(`msg="camd running" api=(https?://[0-9.:]+)/`)

// startCamd writes config (with plugin_dir and http.listen filled in) and
// runs camd on it until the test ends.
func startCamd(t testing.TB, config string) *camd {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	c := &camd{t: t, path: path, logs: &logBuffer{}, done: make(chan struct{}), client: http.DefaultClient}
	c.writeConfig(config)
	c.cmd = exec.Command(filepath.Join(binDir, "camd"), "run", "-config", path)
	pr, pw := io.Pipe()
	c.cmd.Stderr = io.MultiWriter(c.logs, pw)
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		c.err = c.cmd.Wait()
		pw.Close()
		close(c.done)
	}()
	t.Cleanup(func() {
		c.stop()
		if t.Failed() {
			t.Logf("camd log:\n%s", c.logs.String())
		}
	})
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if m := apiRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
	}()
	select {
	case c.api = <-found:
	case <-c.done:
		t.Fatalf("camd exited: %v\n%s", c.err, c.logs.String())
	case <-time.After(20 * time.Second):
		t.Fatalf("camd did not start:\n%s", c.logs.String())
	}
	return c
}

// writeConfig (re)writes camd's config file: body plus the lines every
// test shares (an API on any free port, the test's binaries, debug logs).
func (c *camd) writeConfig(body string) {
	c.t.Helper()
	full := fmt.Sprintf("http:\n  listen: 127.0.0.1:0\nplugin_dir: %s\nlog_level: debug\n%s", binDir, body)
	// Written aside and renamed, as editors do, so camd never reads half a file.
	tmp := c.path + ".tmp"
	if err := os.WriteFile(tmp, []byte(full), 0o644); err != nil {
		c.t.Fatal(err)
	}
	if err := os.Rename(tmp, c.path); err != nil {
		c.t.Fatal(err)
	}
}

func (c *camd) stop() {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
		c.t.Errorf("camd did not stop on SIGTERM")
	}
}

type status struct {
	Cameras []struct {
		Name           string  `json:"name"`
		State          string  `json:"state"`
		Frames         uint64  `json:"frames"`
		Dropped        uint64  `json:"dropped"`
		FPS            float64 `json:"fps"`
		LastFrameAgeMS int64   `json:"last_frame_age_ms"`
	} `json:"cameras"`
	Outputs []struct {
		Name     string   `json:"name"`
		Plugin   string   `json:"plugin"`
		State    string   `json:"state"`
		PID      int      `json:"pid"`
		Restarts int      `json:"restarts"`
		URLs     []string `json:"urls"`
	} `json:"outputs"`
	Reload *struct {
		OK      bool      `json:"ok"`
		At      time.Time `json:"at"`
		Errors  []string  `json:"errors"`
		Changed []string  `json:"changed"`
	} `json:"reload"`
}

func (c *camd) status() status {
	c.t.Helper()
	var s status
	c.apiJSON("/api/status", &s)
	return s
}

// apiGet returns the body of GET path on camd's API, as its admin.
func (c *camd) apiGet(path string) []byte {
	c.t.Helper()
	req, _ := http.NewRequest("GET", c.api+path, nil)
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("GET %s: %v", path, err)
	}
	return body
}

// apiJSON decodes the JSON of GET path on camd's API into v.
func (c *camd) apiJSON(path string, v any) {
	c.t.Helper()
	if err := json.Unmarshal(c.apiGet(path), v); err != nil {
		c.t.Fatalf("GET %s: %v", path, err)
	}
}

// waitOutputs waits until every output runs and returns the status.
func (c *camd) waitOutputs(pred func(status) bool) status {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		s := c.status()
		ok := true
		for _, o := range s.Outputs {
			ok = ok && o.State == "running" && len(o.URLs) > 0
		}
		if ok && (pred == nil || pred(s)) {
			return s
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("outputs not running: %+v", c.status())
	return status{}
}

// streamURL returns output o's stream URL for camera cam.
func streamURL(s status, output, cam string) string {
	return outputURL(s, output, "/cameras/"+cam+"/stream.mjpg")
}

// outputURL returns the URL output reports that ends in suffix.
func outputURL(s status, output, suffix string) string {
	for _, o := range s.Outputs {
		if o.Name == output {
			for _, u := range o.URLs {
				if strings.HasSuffix(u, suffix) {
					return u
				}
			}
		}
	}
	return ""
}

// viewer reads an MJPEG stream and records each part's X-Frame-Seq.
type viewer struct {
	mu     sync.Mutex
	seqs   []uint64
	times  []time.Time
	sizes  []int
	err    error
	done   chan struct{}
	cancel context.CancelFunc
}

func watch(t *testing.T, url string) *viewer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	v := &viewer{done: make(chan struct{}), cancel: cancel}
	t.Cleanup(func() { cancel(); <-v.done })
	go func() {
		defer close(v.done)
		defer resp.Body.Close()
		r := device.NewMultipartReader(resp.Body, "123456789000000000000987654321", 16<<20)
		for {
			hdr, body, err := r.NextPart()
			if err != nil {
				v.mu.Lock()
				v.err = err
				v.mu.Unlock()
				return
			}
			if _, _, _, err := device.CheckJPEG(body, 0); err != nil {
				v.mu.Lock()
				v.err = fmt.Errorf("bad frame from camd: %w", err)
				v.mu.Unlock()
				return
			}
			seq, _ := strconv.ParseUint(hdr.Get("X-Frame-Seq"), 10, 64)
			v.mu.Lock()
			v.seqs = append(v.seqs, seq)
			v.times = append(v.times, time.Now())
			v.sizes = append(v.sizes, len(body))
			v.mu.Unlock()
		}
	}()
	return v
}

func (v *viewer) count() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.seqs)
}

func (v *viewer) waitFrames(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for v.count() < n {
		if time.Now().After(deadline) {
			v.mu.Lock()
			defer v.mu.Unlock()
			t.Fatalf("viewer got %d frames, want %d (err %v)", len(v.seqs), n, v.err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func pidAlive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	// A zombie still answers kill(0); look at its state.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(b))
	return len(fields) > 2 && fields[2] != "Z"
}

func waitGone(t *testing.T, pid int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for pidAlive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still alive", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
