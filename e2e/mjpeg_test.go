package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const simConfig = `
cameras:
  - name: sim
    source: {type: sim, size: 640x480, fps: 15, quality: 75}
outputs:
  - name: web
    plugin: mjpeg
    config:
      listen: 127.0.0.1:0
`

// ffprobe, a client nobody here wrote, recognises the stream.
func TestFFprobeReadsStream(t *testing.T) {
	if _, err := exec.LookPath("ffprobe"); err != nil {
		t.Fatal("ffprobe not installed: run scripts/setup.sh")
	}
	c := startCamd(t, simConfig)
	url := streamURL(c.waitOutputs(nil), "web", "sim")
	out, err := exec.Command("ffprobe", "-v", "error", "-f", "mpjpeg", "-select_streams", "v:0",
		"-show_entries", "stream=codec_name,width,height", "-of", "json", "-rw_timeout", "10000000", url).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe: %v\n%s", err, out)
	}
	var probe struct {
		Streams []struct {
			CodecName string `json:"codec_name"`
			Width     int    `json:"width"`
			Height    int    `json:"height"`
		} `json:"streams"`
	}
	if err := json.Unmarshal(out, &probe); err != nil || len(probe.Streams) != 1 {
		t.Fatalf("ffprobe output: %s", out)
	}
	if s := probe.Streams[0]; s.CodecName != "mjpeg" || s.Width != 640 || s.Height != 480 {
		t.Fatalf("ffprobe saw %+v", s)
	}
}

// ffmpeg decodes the frames it reads without a decode error.
func TestFFmpegDecodesStream(t *testing.T) {
	c := startCamd(t, simConfig)
	url := streamURL(c.waitOutputs(nil), "web", "sim")
	cmd := exec.Command("ffmpeg", "-hide_banner", "-nostats", "-v", "error", "-f", "mpjpeg", "-rw_timeout", "10000000",
		"-i", url, "-frames:v", "30", "-f", "framemd5", "-")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, stderr.String())
	}
	if stderr.Len() > 0 {
		t.Fatalf("ffmpeg reported errors:\n%s", stderr.String())
	}
	frames := 0
	for _, line := range strings.Split(string(out), "\n") {
		if line != "" && !strings.HasPrefix(line, "#") {
			frames++
		}
	}
	if frames != 30 {
		t.Fatalf("ffmpeg decoded %d frames, want 30", frames)
	}
}

// Go's multipart reader sees about the configured fps, and the status API
// agrees.
func TestStreamRateAndStatus(t *testing.T) {
	c := startCamd(t, simConfig)
	url := streamURL(c.waitOutputs(nil), "web", "sim")
	v := watch(t, url)
	v.waitFrames(t, 3, 10*time.Second)
	start, n0 := time.Now(), v.count()
	time.Sleep(3 * time.Second)
	fps := float64(v.count()-n0) / time.Since(start).Seconds()
	if fps < 11 || fps > 17 {
		t.Fatalf("viewer got %.1f fps, configured 15", fps)
	}
	s := c.status()
	if cam := s.Cameras[0]; cam.State != "live" || cam.FPS < 11 || cam.LastFrameAgeMS < 0 || cam.LastFrameAgeMS > 1000 {
		t.Fatalf("camera status %+v", cam)
	}
	if o := s.Outputs[0]; o.Plugin != "mjpeg" || o.PID == 0 {
		t.Fatalf("output status %+v", o)
	}
}

// SIGKILL one plugin: it is restarted and its stream resumes, while the
// other output's viewer sees no gap.
func TestPluginKilledIsRestarted(t *testing.T) {
	c := startCamd(t, `
cameras:
  - name: sim
    source: {type: sim, size: 320x240, fps: 15}
outputs:
  - {name: a, plugin: mjpeg, config: {listen: "127.0.0.1:0"}}
  - {name: b, plugin: mjpeg, config: {listen: "127.0.0.1:0"}}
`)
	s := c.waitOutputs(nil)
	vb := watch(t, streamURL(s, "b", "sim"))
	va := watch(t, streamURL(s, "a", "sim"))
	va.waitFrames(t, 5, 10*time.Second)
	vb.waitFrames(t, 5, 10*time.Second)

	pid := s.Outputs[0].PID
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-va.done // a's viewer loses its connection with the process
	s = c.waitOutputs(func(s status) bool { return s.Outputs[0].Restarts == 1 && s.Outputs[0].PID != pid })
	va2 := watch(t, streamURL(s, "a", "sim"))
	va2.waitFrames(t, 10, 10*time.Second)

	vb.mu.Lock()
	defer vb.mu.Unlock()
	if vb.err != nil {
		t.Fatalf("b's viewer lost its stream: %v", vb.err)
	}
	for i := 1; i < len(vb.seqs); i++ {
		if gap := vb.seqs[i] - vb.seqs[i-1]; gap > 2 {
			t.Fatalf("b's viewer skipped from frame %d to %d while a restarted", vb.seqs[i-1], vb.seqs[i])
		}
	}
}

// Killing camd with SIGKILL takes its plugins with it: no orphans.
func TestCamdKilledPluginsExit(t *testing.T) {
	c := startCamd(t, simConfig)
	pid := c.waitOutputs(nil).Outputs[0].PID
	if err := c.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-c.done
	waitGone(t, pid, 5*time.Second)
}

// SIGTERM stops everything cleanly: camd exits 0, the plugin exits, and a
// viewer's connection is closed.
func TestSIGTERMStopsCleanly(t *testing.T) {
	c := startCamd(t, simConfig)
	s := c.waitOutputs(nil)
	v := watch(t, streamURL(s, "web", "sim"))
	v.waitFrames(t, 2, 10*time.Second)
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		t.Fatal("camd did not exit")
	}
	if c.err != nil {
		t.Fatalf("camd exited with %v", c.err)
	}
	waitGone(t, s.Outputs[0].PID, 5*time.Second)
	select {
	case <-v.done:
	case <-time.After(5 * time.Second):
		t.Fatal("viewer still connected")
	}
	if strings.Contains(c.logs.String(), "level=ERROR") {
		t.Fatalf("errors logged during a clean shutdown:\n%s", c.logs.String())
	}
}

// camd validate runs the plugins' own config checks and reports file:line.
// camd validate accepts a good config (the broken ones are in
// TestBrokenConfigsAreRefused).
func TestValidate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(path, []byte("plugin_dir: "+binDir+"\n"+simConfig), 0o644)
	out, err := exec.Command(filepath.Join(binDir, "camd"), "validate", "-config", path).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok (1 cameras, 1 outputs)") {
		t.Fatalf("good config: %v\n%s", err, out)
	}
}
