package config

import (
	"strings"
	"testing"
)

const good = `
http:
  listen: 127.0.0.1:9090
cameras:
  - name: front
    source:
      type: sim
      size: 320x240
      fps: 10
  - name: bench
    source:
      type: esp32
      url: http://10.0.0.5:8080
outputs:
  - name: web
    plugin: mjpeg
    config:
      listen: 127.0.0.1:8081
  - name: stills
    plugin: snapshot
    cameras: [bench]
`

func TestParseGood(t *testing.T) {
	c, err := Parse("/etc/camd/config.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTP.Listen != "127.0.0.1:9090" || c.PluginDir != "/etc/camd/bin" || c.LogLevel != "info" {
		t.Fatalf("defaults: %+v", c)
	}
	if got := c.Outputs[0].Cameras; len(got) != 2 || got[0] != "front" || got[1] != "bench" {
		t.Fatalf("default cameras = %v", got)
	}
	if c.Cameras[0].OnDemand || c.Cameras[0].Linger != DefaultLinger {
		t.Fatalf("on_demand defaults: %v, linger %v", c.Cameras[0].OnDemand, c.Cameras[0].Linger)
	}
	if c.Cameras[1].Source.Mode != "capture" {
		t.Fatalf("esp32 default mode = %q", c.Cameras[1].Source.Mode)
	}
	if p := c.PluginPath(c.Outputs[1]); p != "/etc/camd/bin/camd-plugin-snapshot" {
		t.Fatalf("plugin path = %s", p)
	}
	raw, err := c.OutputConfigYAML(0)
	if err != nil || strings.TrimSpace(string(raw)) != "listen: 127.0.0.1:8081" {
		t.Fatalf("config block = %q, %v", raw, err)
	}
	if e := c.PluginError(0, "listen", "bad"); e.Error() != "/etc/camd/config.yaml:18: outputs[0].config.listen: bad" {
		t.Fatalf("plugin error = %v", e)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"tab indent", "log_level: info\ncameras:\n\t- name: a\n", "c.yaml:3: found character that cannot start any token"},
		{"unclosed flow mapping", "http:\n  listen: 1\ncameras:\n  - name: a\n    source: {type: sim\n", "c.yaml:4: did not find expected ',' or '}'"},
		{"duplicate key", "log_level: info\ncameras:\n  - name: a\n    source: {type: sim}\nlog_level: debug\n", "c.yaml:5: log_level: duplicate key (first at line 1)"},
		{"unknown top-level key", "camera:\n  - name: a\n", "c.yaml:1: camera: unknown key (known: auth, cameras, cors, http, log_level, outputs, plugin_auto_mtls, plugin_dir, tls, watch)"},
		{"unknown source key", "cameras:\n  - name: a\n    source:\n      type: sim\n      fpx: 3\n", "c.yaml:5: cameras[0].source.fpx: unknown key (known: fps, mode, quality, size, stream_url, token, type, url)"},
		{"wrong type", "cameras:\n  - name: a\n    source:\n      type: sim\n      fps: fast\n", "c.yaml:5: cameras[0].source.fps: cannot unmarshal !!str `fast` into float64"},
		{"cameras not a list", "cameras: front\n", "c.yaml:1: cameras: must be a list"},
		{"no cameras", "http:\n  listen: 127.0.0.1:1\n", "c.yaml: cameras: no cameras configured"},
		{"missing name", "cameras:\n  - source: {type: sim}\n", "c.yaml:2: cameras[0].name: missing"},
		{"bad name", "cameras:\n  - name: a/b\n    source: {type: sim}\n", `c.yaml:2: cameras[0].name: "a/b": use letters, digits, - and _ (it becomes part of URLs)`},
		{"duplicate camera", "cameras:\n  - name: a\n    source: {type: sim}\n  - name: a\n    source: {type: sim}\n", `c.yaml:4: cameras[1].name: duplicate camera name "a"`},
		{"unknown source type", "cameras:\n  - name: a\n    source:\n      type: rtsp\n", `c.yaml:4: cameras[0].source.type: unknown source type "rtsp" (want sim, esp32 or mjpeg)`},
		{"esp32 without url", "cameras:\n  - name: a\n    source:\n      type: esp32\n", "c.yaml:3: cameras[0].source.url: missing"},
		{"esp32 bad url", "cameras:\n  - name: a\n    source:\n      type: esp32\n      url: 10.0.0.5\n", `c.yaml:5: cameras[0].source.url: "10.0.0.5": want an http:// or https:// URL`},
		{"esp32 bad mode", "cameras:\n  - name: a\n    source:\n      type: esp32\n      url: http://x\n      mode: poll\n", `c.yaml:6: cameras[0].source.mode: unknown mode "poll" (want capture or stream)`},
		{"bad size", "cameras:\n  - name: a\n    source:\n      type: sim\n      size: big\n", `c.yaml:5: cameras[0].source.size: invalid size "big" (want WIDTHxHEIGHT, e.g. 640x480)`},
		{"bad quality", "cameras:\n  - name: a\n    source:\n      type: sim\n      quality: 101\n", "c.yaml:5: cameras[0].source.quality: want 1 to 100"},
		{"bad listen", "http:\n  listen: 8080\ncameras:\n  - name: a\n    source: {type: sim}\n", "c.yaml:2: http.listen: want host:port, e.g. 127.0.0.1:8080"},
		{"bad log level", "log_level: loud\ncameras:\n  - name: a\n    source: {type: sim}\n", `c.yaml:1: log_level: unknown level "loud" (want debug, info, warn or error)`},
		{"output without plugin", "cameras:\n  - name: a\n    source: {type: sim}\noutputs:\n  - name: o\n", "c.yaml:5: outputs[0]: set plugin (e.g. plugin: mjpeg) or command"},
		{"output unknown camera", "cameras:\n  - name: a\n    source: {type: sim}\noutputs:\n  - name: o\n    plugin: mjpeg\n    cameras: [a, b]\n", `c.yaml:7: outputs[0].cameras[1]: unknown camera "b"`},
		{"output duplicate", "cameras:\n  - name: a\n    source: {type: sim}\noutputs:\n  - {name: o, plugin: mjpeg}\n  - {name: o, plugin: mjpeg}\n", `c.yaml:6: outputs[1].name: duplicate output name "o"`},
		{"output config not a mapping", "cameras:\n  - name: a\n    source: {type: sim}\noutputs:\n  - name: o\n    plugin: mjpeg\n    config: [1, 2]\n", "c.yaml:7: outputs[0].config: must be a mapping of keys to values"},
		{"negative linger", "cameras:\n  - name: a\n    on_demand: true\n    linger: -1s\n    source: {type: sim}\n", "c.yaml:4: cameras[0].linger: must not be negative, e.g. 10s"},
		{"on_demand not a bool", "cameras:\n  - name: a\n    on_demand: sometimes\n    source: {type: sim}\n", "c.yaml:3: cameras[0].on_demand: cannot unmarshal !!str `sometimes` into bool"},
		{"bad sha256", "cameras:\n  - name: a\n    source: {type: sim}\noutputs:\n  - name: o\n    plugin: mjpeg\n    sha256: abc\n", "c.yaml:7: outputs[0].sha256: want 64 hex digits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("c.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			if got := strings.Split(err.Error(), "\n")[0]; got != tt.want {
				t.Fatalf("error\n got: %s\nwant: %s", got, tt.want)
			}
		})
	}
}

func TestParseReportsAllErrors(t *testing.T) {
	_, err := Parse("c.yaml", []byte("cameras:\n  - name: a\n    source: {type: sim, fpx: 1}\n  - name: b\n    source: {type: sim, qualty: 1}\n"))
	if err == nil || len(err.(Errors)) != 2 {
		t.Fatalf("want 2 errors, got %v", err)
	}
}
