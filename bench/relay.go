package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// relay is one process tree under test that reads the source and serves
// MJPEG viewers: camd with its mjpeg plugin, or go2rtc for comparison.
type relay struct {
	name      string
	streamURL string
	procs     procTree
	cmd       *exec.Cmd
	// frames returns the frames the relay has read from the source, where
	// it says (camd's /api/status); nil where it does not.
	frames func() (uint64, error)
}

// stop ends the relay and waits for it.
func (r *relay) stop() {
	_ = r.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = r.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = r.cmd.Process.Kill()
		<-done
	}
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startCamd runs bin/camd on a config with one camera reading src and one
// mjpeg output whose limits admit every viewer of the benchmark.
func startCamd(ctx context.Context, bin, dir, src string) (*relay, error) {
	api, err := freePort()
	if err != nil {
		return nil, err
	}
	out, err := freePort()
	if err != nil {
		return nil, err
	}
	absBin, err := filepath.Abs(bin)
	if err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`http: {listen: %q}
plugin_dir: %q
log_level: warn
cameras:
  - name: bench
    source: {type: mjpeg, url: %q}
outputs:
  - name: mjpeg
    plugin: mjpeg
    config: {listen: %q, max_viewers: 5000, max_viewers_per_client: 5000}
`, api, absBin, src, out)
	path := filepath.Join(dir, "camd.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(absBin, "camd"), "run", "-config", path)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start camd: %w", err)
	}
	r := &relay{name: "camd", cmd: cmd, procs: procTree{cmd.Process.Pid},
		streamURL: "http://" + out + "/cameras/bench/stream.mjpg"}
	r.frames = func() (uint64, error) {
		var st struct {
			Cameras []struct {
				Frames uint64 `json:"frames"`
			} `json:"cameras"`
		}
		if err := getJSON("http://"+api+"/api/status", &st); err != nil {
			return 0, err
		}
		if len(st.Cameras) != 1 {
			return 0, errors.New("camd: no camera in /api/status")
		}
		return st.Cameras[0].Frames, nil
	}
	// Ready when the camera has frames.
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := r.frames()
		if err == nil && n > 0 {
			return r, nil
		}
		if time.Now().After(deadline) {
			r.stop()
			return nil, fmt.Errorf("camd: no frames after 30s (%v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startGo2rtc runs go2rtc relaying src; go2rtc connects to the source when
// the first viewer arrives.
func startGo2rtc(ctx context.Context, bin, dir, src string) (*relay, error) {
	api, err := freePort()
	if err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf("api: {listen: %q}\nrtsp: {listen: \"\"}\nwebrtc: {listen: \"\"}\nsrtp: {listen: \"\"}\nlog: {level: warn}\nstreams:\n  bench: %s\n", api, src)
	path := filepath.Join(dir, "go2rtc.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, "-config", path)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start go2rtc: %w", err)
	}
	r := &relay{name: "go2rtc", cmd: cmd, procs: procTree{cmd.Process.Pid},
		streamURL: "http://" + api + "/api/stream.mjpeg?src=bench"}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + api + "/api")
		if err == nil {
			resp.Body.Close()
			return r, nil
		}
		if time.Now().After(deadline) {
			r.stop()
			return nil, fmt.Errorf("go2rtc: not answering after 30s: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func getJSON(url string, v any) error {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
