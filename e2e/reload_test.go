package e2e

import (
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// reloadBase has 2 cameras and 3 outputs: "keep" stays as it is across
// the reload, "stills" changes its config (a restart), "grid" only gains a
// camera (a new camera list without a restart).
const reloadBase = `
cameras:
  - name: a
    source: {type: sim, size: 320x240, fps: 8}
  - name: b
    source: {type: sim, size: 320x240, fps: 8}
outputs:
  - name: keep
    plugin: mjpeg
    cameras: [a]
    config: {listen: 127.0.0.1:0}
  - name: stills
    plugin: snapshot
    config: {listen: 127.0.0.1:0, wait: 5s}
  - name: grid
    plugin: mjpeg
    cameras: [a, b]
    config: {listen: 127.0.0.1:0}
`

// reloadNext adds camera c, changes stills' config and gives grid camera c.
const reloadNext = `
cameras:
  - name: a
    source: {type: sim, size: 320x240, fps: 8}
  - name: b
    source: {type: sim, size: 320x240, fps: 8}
  - name: c
    source: {type: sim, size: 160x120, fps: 8}
outputs:
  - name: keep
    plugin: mjpeg
    cameras: [a]
    config: {listen: 127.0.0.1:0}
  - name: stills
    plugin: snapshot
    config: {listen: 127.0.0.1:0, wait: 3s}
  - name: grid
    plugin: mjpeg
    cameras: [a, b, c]
    config: {listen: 127.0.0.1:0}
`

func pids(s status) map[string]int {
	m := map[string]int{}
	for _, o := range s.Outputs {
		m[o.Name] = o.PID
	}
	return m
}

// A reload applies only the difference: the untouched output's viewers
// stay connected without a gap, a changed output restarts, an output whose
// camera list changed keeps its process, and a new camera starts. An
// invalid file changes nothing and says why in /api/status.
func TestReloadAppliesOnlyTheDifference(t *testing.T) {
	c := startCamd(t, reloadBase)
	before := c.waitOutputs(nil)
	v := watch(t, streamURL(before, "keep", "a"))
	v.waitFrames(t, 5, 10*time.Second)

	c.writeConfig(reloadNext)
	if err := c.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	after := c.waitReload(t, func(s status) bool {
		return len(s.Cameras) == 3 && s.Cameras[2].State == "live" && len(s.Outputs) == 3 &&
			outputState(s, "stills") == "running" && outputState(s, "grid") == "running"
	})
	if !after.Reload.OK {
		t.Fatalf("reload refused: %v", after.Reload.Errors)
	}
	p0, p1 := pids(before), pids(after)
	if p1["keep"] != p0["keep"] {
		t.Errorf("keep was restarted (pid %d → %d)", p0["keep"], p1["keep"])
	}
	if p1["grid"] != p0["grid"] {
		t.Errorf("grid was restarted for a new camera list (pid %d → %d); want it retargeted", p0["grid"], p1["grid"])
	}
	if p1["stills"] == p0["stills"] {
		t.Errorf("stills kept pid %d although its config changed", p1["stills"])
	}
	// The new camera is served by the retargeted output, which says so.
	if streamURL(after, "grid", "c") == "" {
		t.Errorf("grid's URLs lack camera c: %v", after.Outputs[2].URLs)
	}
	g := watch(t, strings.Replace(streamURL(after, "grid", "a"), "/cameras/a/", "/cameras/c/", 1))
	g.waitFrames(t, 3, 10*time.Second)

	// The untouched viewer saw the reload as nothing: same connection,
	// camera a never restarted (its sequence runs on), no frame lost.
	n := v.count()
	v.waitFrames(t, n+5, 10*time.Second)
	checkContinuous(t, v, 1)

	// An invalid file: everything keeps running, the error is visible.
	c.writeConfig(reloadNext + "  - name: broken\n    plugin: mjpeg\n    config: {listen: nonsense}\n    colour: red\n")
	c.cmd.Process.Signal(syscall.SIGHUP)
	bad := c.waitReload(t, func(s status) bool { return !s.Reload.OK })
	if len(bad.Reload.Errors) == 0 || !strings.Contains(strings.Join(bad.Reload.Errors, "\n"), "config.yaml:") ||
		!strings.Contains(strings.Join(bad.Reload.Errors, "\n"), "colour: unknown key") {
		t.Errorf("reload errors lack file:line and key: %q", bad.Reload.Errors)
	}
	if p := pids(bad); p["keep"] != p1["keep"] || p["grid"] != p1["grid"] || p["stills"] != p1["stills"] || len(bad.Outputs) != 3 {
		t.Errorf("an invalid config changed the running outputs: %v → %v", p1, p)
	}
	n = v.count()
	v.waitFrames(t, n+5, 10*time.Second)
	checkContinuous(t, v, 1)
}

// waitReload waits until /api/status shows a reload at which pred holds.
func (c *camd) waitReload(t *testing.T, pred func(status) bool) status {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s := c.status()
		if s.Reload != nil && pred(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("reload not applied: %+v", s)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func outputState(s status, name string) string {
	for _, o := range s.Outputs {
		if o.Name == name {
			return o.State
		}
	}
	return ""
}

// checkContinuous fails if the viewer's connection broke, or if frame
// numbers jumped by more than maxLost+1 anywhere (a restarted camera
// starts again from 1, which shows as a jump backwards).
func checkContinuous(t *testing.T, v *viewer, maxLost uint64) {
	t.Helper()
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.err != nil {
		t.Fatalf("viewer's stream broke: %v", v.err)
	}
	var gap time.Duration
	for i := 1; i < len(v.seqs); i++ {
		if d := v.seqs[i] - v.seqs[i-1]; v.seqs[i] <= v.seqs[i-1] || d > maxLost+1 {
			t.Fatalf("frame %d followed frame %d: the stream was interrupted", v.seqs[i], v.seqs[i-1])
		}
		gap = max(gap, v.times[i].Sub(v.times[i-1]))
	}
	t.Logf("%d frames, longest gap between frames %v", len(v.seqs), gap.Round(time.Millisecond))
}

// camd reload and POST /api/reload do what SIGHUP does, and say what
// changed or why not.
func TestReloadCommand(t *testing.T) {
	c := startCamd(t, simConfig)
	c.waitOutputs(nil)
	// camd reload finds the daemon through http.listen, so the file must
	// name the port it really listens on.
	body := strings.Replace(simConfig, "fps: 15", "fps: 10", 1)
	c.writeConfig(body)
	cfg := strings.Replace(readFile(t, c.path), "listen: 127.0.0.1:0\n", "listen: "+strings.TrimPrefix(c.api, "http://")+"\n", 1)
	writeFile(t, c.path, cfg)

	out, err := exec.Command(filepath.Join(binDir, "camd"), "reload", "-config", c.path).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "camd reload: ok") || !strings.Contains(string(out), "camera sim: restarted") {
		t.Fatalf("camd reload: %v\n%s", err, out)
	}
	writeFile(t, c.path, cfg+"bogus: 1\n")
	out, err = exec.Command(filepath.Join(binDir, "camd"), "reload", "-config", c.path).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "bogus: unknown key") {
		// camd reload parses the file itself first, so it reports the error
		// before asking the daemon; either way it must not succeed.
		t.Fatalf("camd reload of a bad file: %v\n%s", err, out)
	}

	resp, err := http.Post(c.api+"/api/reload", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("POST /api/reload of a bad file: %s", resp.Status)
	}
	s := c.status()
	if s.Reload == nil || s.Reload.OK || !slices.ContainsFunc(s.Reload.Errors, func(e string) bool { return strings.Contains(e, "bogus") }) {
		t.Fatalf("status after a refused reload: %+v", s.Reload)
	}
}

// With watch: true, saving the file is enough.
func TestReloadWatchesTheFile(t *testing.T) {
	c := startCamd(t, "watch: true\n"+simConfig)
	c.waitOutputs(nil)
	c.writeConfig("watch: true\n" + strings.Replace(simConfig, "name: web", "name: web2", 1))
	c.waitReload(t, func(s status) bool {
		return len(s.Outputs) == 1 && s.Outputs[0].Name == "web2" && s.Outputs[0].State == "running"
	})
	if !strings.Contains(c.logs.String(), "config file changed; reloading") {
		t.Errorf("no log line for the watched change")
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// What a reload cannot apply after all, it says, and what ran keeps
// running: an output whose plugin cannot start with its new config goes
// back to its previous one. The API moves to TLS on its own port. A
// comment in a config block, or a token an open output does not use,
// restarts nothing; a camera restarted by a reload numbers its frames on
// from where they were. A client giving up on POST /api/reload does not
// cancel it.
func TestReloadEdges(t *testing.T) {
	c := startCamd(t, fmt.Sprintf(`
cameras:
  - name: a
    source: {type: sim, size: 160x120, fps: 10}
outputs:
  - {name: web, plugin: mjpeg, auth: none, config: {listen: %q}}
  - {name: stills, plugin: snapshot, auth: none, config: {listen: %q}}
`, freeAddr(t), freeAddr(t)))
	s0 := c.waitOutputs(nil)
	v := watch(t, streamURL(s0, "web", "a"))
	v.waitFrames(t, 5, 10*time.Second)
	stillsURL := snapshotURL(s0, "stills", "a")
	hostOf := func(u string) string { return strings.Split(u[strings.Index(u, "//")+2:], "/")[0] }
	client, tlsBlock := selfSigned(t)
	// The same ports from now on, so that an unchanged block is unchanged.
	type setup struct {
		http, extra, web, stills string
		fps                      int
	}
	file := func(x setup) string {
		return fmt.Sprintf("http: {listen: %q%s}\nplugin_dir: %s\nlog_level: debug\n%s\ncameras:\n"+
			"  - name: a\n    source: {type: sim, size: 160x120, fps: %d}\noutputs:\n"+
			"  - name: web\n    plugin: mjpeg\n    auth: none\n    config:%s\n"+
			"  - name: stills\n    plugin: snapshot\n    auth: none\n    config: {listen: %q%s}\n",
			hostOf(c.api), x.http, binDir, x.extra, x.fps, x.web, hostOf(stillsURL), x.stills)
	}
	webBlock := fmt.Sprintf(" {listen: %q}", hostOf(streamURL(s0, "web", "a")))
	const token = "an-admin-token-the-open-outputs-never-see-0123"
	auth := "auth:\n  tokens: [{name: ops, token: " + token + ", scope: admin}]\n"
	reload := func(body string) status {
		t.Helper()
		writeFile(t, c.path, body)
		before := c.status().Reload
		req, _ := http.NewRequest("POST", c.api+"/api/reload", nil)
		req.Header.Set("Authorization", "Bearer "+c.token)
		resp, err := c.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if strings.Contains(body, "token: ") {
			c.token = token // camd's API asks for it from now on
		}
		if strings.Contains(body, tlsBlock) {
			c.client, c.api = client, "https://"+hostOf(c.api)
		}
		return c.waitReload(t, func(s status) bool { return before == nil || s.Reload.At.After(before.At) })
	}
	// The same settings written out, and the API's own port named (a
	// move to the address it holds).
	s := reload(file(setup{web: webBlock, fps: 10}))
	if !s.Reload.OK || !maps.Equal(pids(s), pids(s0)) {
		t.Fatalf("the same settings written out: reload %+v, pids %v → %v", s.Reload, pids(s0), pids(s))
	}

	// A comment and the block reflowed, and a token only authed outputs
	// (and camd's API) use: nothing restarts, the viewer stays.
	s = reload(file(setup{fps: 10, extra: auth,
		web: fmt.Sprintf("\n      # the page\n      listen: %q # here\n", hostOf(streamURL(s0, "web", "a")))}))
	if !s.Reload.OK || len(s.Reload.Changed) != 0 || !maps.Equal(pids(s), pids(s0)) {
		t.Fatalf("a comment and an unused token: reload %+v, pids %v → %v", s.Reload, pids(s0), pids(s))
	}

	// The camera restarts (a new fps): its frames go on from where they were.
	seqOf := func(url string) int {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		n, _ := strconv.Atoi(resp.Header.Get("X-Frame-Seq"))
		return n
	}
	seq := seqOf(stillsURL)
	if s = reload(file(setup{web: webBlock, fps: 12, extra: auth})); !s.Reload.OK {
		t.Fatalf("reload: %+v", s.Reload)
	}
	if got := seqOf(stillsURL + "?newer_than=now&timeout=10s"); got <= seq {
		t.Fatalf("after the camera restarted, frame %d; before, %d", got, seq)
	}

	// The snapshot plugin cannot make its camera's folder (a file is in
	// the way): the reload says so, and stills runs its previous config.
	tl := t.TempDir()
	writeFile(t, filepath.Join(tl, "a"), "in the way")
	s = reload(file(setup{web: webBlock, fps: 12, extra: auth, stills: fmt.Sprintf(", dir: %q, every: 1s", tl)}))
	if s.Reload.OK || !strings.Contains(strings.Join(s.Reload.Errors, "\n"), "runs its previous config") ||
		!slices.Contains(s.Reload.Changed, "output stills: not restarted") {
		t.Fatalf("a reload whose output cannot start: %+v", s.Reload)
	}
	if got := seqOf(stillsURL); got <= seq {
		t.Fatalf("stills after the refused change: frame %d", got)
	}

	// The API turns TLS on at its own address (the reload's answer comes
	// on the plain connection that asked; status is read over TLS).
	plain := c.api
	secure := file(setup{web: webBlock, fps: 12, extra: auth, http: ", " + tlsBlock})
	if s = reload(secure); !s.Reload.OK || !slices.Contains(s.Reload.Changed, "api: now on "+c.api+"/") {
		t.Fatalf("reload to TLS: %+v", s.Reload)
	}
	if resp, err := http.Get(plain + "/api/status"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("the API still answers plain HTTP after TLS was turned on")
		}
	}

	// A client that gives up at once does not cancel the reload.
	before := c.status().Reload
	writeFile(t, c.path, strings.Replace(secure, "fps: 12", "fps: 9", 1))
	hasty := &http.Client{Transport: client.Transport, Timeout: time.Millisecond}
	req, _ := http.NewRequest("POST", c.api+"/api/reload", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if resp, err := hasty.Do(req); err == nil {
		resp.Body.Close()
	}
	if s = c.waitReload(t, func(s status) bool { return s.Reload.At.After(before.At) }); !s.Reload.OK {
		t.Fatalf("a reload whose client gave up: %+v", s.Reload)
	}
	checkContinuous(t, v, 1)
}
