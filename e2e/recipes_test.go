package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

const recipeToken = "recipe-view-token-0123456789abcdef"

// The README's recipes work as written: each URL in them, pointed at a
// real camd, is read by the software the recipe is for (or, for Home
// Assistant, by a client doing what its mjpeg integration does).
func TestReadmeRecipes(t *testing.T) {
	readme := readFile(t, "../README.md")
	c := startCamd(t, `
auth:
  tokens:
    - {name: recipes, token: `+recipeToken+`, cameras: [front]}
    - {name: ops, token: `+adminToken+`, scope: admin}
cameras:
  - name: front
    source: {type: sim, size: 320x240, fps: 10}
outputs:
  - {name: web, plugin: mjpeg, config: {listen: "127.0.0.1:0"}}
  - {name: stills, plugin: snapshot, config: {listen: "127.0.0.1:0"}}
`)
	c.token = adminToken
	s := c.waitOutputs(nil)
	mjpegBase := strings.TrimSuffix(outputURL(s, "web", "/"), "/")
	stillBase := strings.TrimSuffix(outputURL(s, "stills", "/"), "/")
	// The recipes' placeholders, made real.
	real := strings.NewReplacer("http://camd.lan:8081", mjpegBase, "http://camd.lan:8083", stillBase,
		"YOUR_HA_TOKEN", recipeToken, "YOUR_TOKEN", recipeToken)
	recipe := func(re string) string {
		t.Helper()
		m := regexp.MustCompile(re).FindStringSubmatch(readme)
		if m == nil {
			t.Fatalf("README has no recipe matching %s", re)
		}
		return real.Replace(m[1])
	}

	t.Run("Home Assistant", func(t *testing.T) {
		mjpeg := recipe(`mjpeg_url: (\S+)`)
		still := recipe(`still_image_url: (\S+)`)
		out, err := exec.Command("/usr/bin/python3", "testdata/ha_mjpeg.py", mjpeg, still, "5").CombinedOutput()
		if err != nil || strings.Count(string(out), "frame ") != 5 || !strings.Contains(string(out), "still ") {
			t.Fatalf("Home Assistant's way of reading camd: %v\n%s", err, out)
		}
	})

	t.Run("VLC", func(t *testing.T) {
		url := recipe(`vlc "([^"]+)"`)
		// Not t.TempDir: its parent is private to root, and VLC runs as nobody.
		dir, err := os.MkdirTemp("", "camd-vlc-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		os.Chmod(dir, 0o777)
		out := filepath.Join(dir, "vlc.mjpg")
		// VLC does not always leave an endless stream at --run-time; what
		// matters is what it recorded by then.
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		args := []string{"--intf", "dummy", "--no-audio", "--play-and-exit", "--run-time", "4", url,
			"--sout", "#std{access=file,mux=mpjpeg,dst=" + out + "}"}
		cmd := exec.CommandContext(ctx, "cvlc", args...)
		if os.Getuid() == 0 { // VLC refuses to run as root
			cmd = exec.CommandContext(ctx, "setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", "env", "HOME=" + dir, "cvlc"}, args...)...)
		}
		log, err := cmd.CombinedOutput()
		b, _ := os.ReadFile(out)
		if n := strings.Count(string(b), "\xff\xd8"); n < 10 {
			t.Fatalf("VLC recorded %d frames (%v)\n%s", n, err, log)
		}
	})

	t.Run("ffmpeg", func(t *testing.T) {
		m := regexp.MustCompile(`ffmpeg -f mjpeg -i "([^"]+)" -c copy`).FindStringSubmatch(readme)
		if m == nil {
			t.Fatal("README has no ffmpeg recipe")
		}
		out := filepath.Join(t.TempDir(), "front.mkv")
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if log, err := exec.CommandContext(ctx, "ffmpeg", "-v", "error", "-f", "mjpeg", "-i", real.Replace(m[1]), "-c", "copy", "-t", "3", out).CombinedOutput(); err != nil {
			t.Fatalf("ffmpeg: %v\n%s", err, log)
		}
		probe, err := exec.Command("ffprobe", "-v", "error", "-count_packets", "-select_streams", "v:0",
			"-show_entries", "stream=codec_name,width,height,nb_read_packets", "-of", "csv=p=0", out).Output()
		var codec string
		var w, h, n int
		fmt.Sscanf(strings.ReplaceAll(string(probe), ",", " "), "%s %d %d %d", &codec, &w, &h, &n)
		if err != nil || codec != "mjpeg" || w != 320 || h != 240 || n < 10 {
			t.Fatalf("ffprobe of the recording: %q, %v", probe, err)
		}
	})
}
