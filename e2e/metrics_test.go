package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// /metrics passes promtool's checks and carries each plugin's own metrics
// (one counter of each), and a real Prometheus scraping camd answers a
// PromQL query for the camera's frame rate.
func TestPrometheusScrapesCamd(t *testing.T) {
	for _, bin := range []string{"promtool", "prometheus"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is missing: run scripts/setup.sh test", bin)
		}
	}
	c := startCamd(t, `
cameras:
  - name: sim
    source: {type: sim, size: 320x240, fps: 10}
outputs:
  - {name: web, plugin: mjpeg, config: {listen: "127.0.0.1:0"}}
  - {name: rtc, plugin: webrtc, config: {listen: "127.0.0.1:0"}}
  - {name: stills, plugin: snapshot, config: {listen: "127.0.0.1:0"}}
`)
	s := c.waitOutputs(nil)
	// Outputs get frames only while used: a viewer for mjpeg, a still
	// for snapshot; webrtc has no viewer.
	watch(t, streamURL(s, "web", "sim")).waitFrames(t, 3, 20*time.Second)
	get(t, outputURL(s, "stills", "/cameras/sim/snapshot.jpg"))

	metrics := get(t, c.api+"/metrics")
	for _, want := range []string{`camd_camera_frames_total{camera="sim"}`, `camd_camera_state{camera="sim",state="live"} 1`,
		`camd_output_up{output="web"} 1`, `camd_plugin_go_goroutines{output="web"}`, `camd_plugin_process_resident_memory_bytes{output="web"}`,
		"go_goroutines ", "process_cpu_seconds_total "} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// Each plugin's own counters, under its output's name.
	for _, want := range []struct {
		name, output string
		used         bool // someone used it: the counter moved
	}{
		{"camd_plugin_mjpeg_frames_received_total", "web", true},
		{"camd_plugin_webrtc_frames_received_total", "rtc", false},
		{"camd_plugin_snapshot_stills_served_total", "stills", true},
	} {
		v, ok := pluginSample(t, metrics, want.name, want.output, "sim")
		switch {
		case !ok:
			t.Errorf("/metrics lacks %s{output=%q,camera=\"sim\"}", want.name, want.output)
		case want.used && v <= 0:
			t.Errorf("/metrics: %s{output=%q} = %v, want more than 0", want.name, want.output, v)
		case !want.used && v != 0:
			t.Errorf("/metrics: %s{output=%q} = %v, want 0: nobody watches, so camd sends it nothing", want.name, want.output, v)
		}
	}
	check := exec.Command("promtool", "check", "metrics")
	check.Stdin = strings.NewReader(metrics)
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}

	// A real Prometheus, scraping every second.
	dir := t.TempDir()
	target := strings.TrimPrefix(c.api, "http://")
	promAddr := freeAddr(t)
	cfg := fmt.Sprintf("global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n  - job_name: camd\n    static_configs: [{targets: [%q]}]\n", target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	prom := exec.CommandContext(ctx, "prometheus", "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+promAddr)
	var plog logBuffer
	prom.Stdout, prom.Stderr = &plog, &plog
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); prom.Wait() }()

	query := "rate(camd_camera_frames_total{camera=\"sim\"}[5s])"
	deadline := time.Now().Add(60 * time.Second)
	for {
		fps, err := promQuery(promAddr, query)
		if err == nil && fps > 0 {
			t.Logf("Prometheus: %s = %.1f", query, fps)
			if fps < 3 || fps > 20 {
				t.Errorf("frame rate per Prometheus %.1f, camera runs at 10", fps)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer from Prometheus for %s (last: %v, %v)\n%s", query, fps, err, plog.String())
		}
		time.Sleep(time.Second)
	}
}

// promQuery runs an instant query and returns the first sample's value.
func promQuery(addr, query string) (float64, error) {
	resp, err := http.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(query))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Data   struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return 0, err
	}
	if r.Status != "success" || len(r.Data.Result) == 0 {
		return 0, fmt.Errorf("status %s, %d results", r.Status, len(r.Data.Result))
	}
	s, _ := r.Data.Result[0].Value[1].(string)
	return strconv.ParseFloat(s, 64)
}

// pluginSample returns the value of the sample of family name labelled
// with output and camera in a /metrics text, and whether there is one.
func pluginSample(t *testing.T, text, name, output, camera string) (float64, bool) {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	for _, m := range fams[name].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["output"] == output && labels["camera"] == camera {
			return m.GetCounter().GetValue() + m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}
