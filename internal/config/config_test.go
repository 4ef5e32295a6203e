package config

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/camd/camd/sdk"
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

// TestParseDocumentMarkers: "---" at the start, or at the end with nothing
// or only comments after it, is one document, as before.
func TestParseDocumentMarkers(t *testing.T) {
	for _, tc := range []struct{ name, doc string }{
		{"leading", "---\n" + good},
		{"trailing", good + "---\n"},
		{"trailing with comments", good + "---\n# the end\n"},
		{"document end", good + "...\n"},
	} {
		if _, err := Parse("c.yaml", []byte(tc.doc)); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"tab indent", "log_level: info\ncameras:\n\t- name: a\n", "c.yaml:3: found character that cannot start any token"},
		{"unclosed flow mapping", "http:\n  listen: 1\ncameras:\n  - name: a\n    source: {type: sim\n", "c.yaml:5: did not find expected ',' or '}'"},
		{"duplicate key", "log_level: info\ncameras:\n  - name: a\n    source: {type: sim}\nlog_level: debug\n", "c.yaml:5: log_level: duplicate key (first at line 1)"},
		{"unknown top-level key", "camera:\n  - name: a\n", "c.yaml:1: camera: unknown key (known: auth, cameras, cors, http, log_level, outputs, plugin_auto_mtls, plugin_dir, tls, watch)"},
		{"unknown source key", "cameras:\n  - name: a\n    source:\n      type: sim\n      fpx: 3\n", "c.yaml:5: cameras[0].source.fpx: unknown key (known: fps, mode, quality, size, stream_url, token, type, url, verify_tls)"},
		{"verify_tls on a sim", "cameras:\n  - name: a\n    source:\n      type: sim\n      verify_tls: false\n", "c.yaml:5: cameras[0].source.verify_tls: not used by a sim camera"},
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
			wantFirstError(t, tt.yaml, tt.want)
		})
	}
}

// wantFirstError checks that parsing doc fails, and that its first error
// reads want.
func wantFirstError(t *testing.T, doc, want string) {
	t.Helper()
	_, err := Parse("c.yaml", []byte(doc))
	if err == nil {
		t.Fatalf("no error, want %q", want)
	}
	if got := strings.Split(err.Error(), "\n")[0]; got != want {
		t.Fatalf("error\n got: %s\nwant: %s", got, want)
	}
}

func TestParseReportsAllErrors(t *testing.T) {
	_, err := Parse("c.yaml", []byte("cameras:\n  - name: a\n    source: {type: sim, fpx: 1}\n  - name: b\n    source: {type: sim, qualty: 1}\n"))
	if err == nil || len(err.(Errors)) != 2 {
		t.Fatalf("want 2 errors, got %v", err)
	}
}

// More of TestParseErrors: what used to pass silently or point elsewhere.
func TestParseErrorsPlaced(t *testing.T) {
	cams := "cameras:\n  - name: a\n    source: {type: sim}\n"
	tests := []struct{ name, yaml, want string }{
		{"quote opened on line 1", "log_level: \"info\ncameras:\n  - name: a\n", "c.yaml:1: this quoted string is never closed (no closing quote before the end of the file)"},
		{"quote opened on line 2", "watch: true\nlog_level: 'info\ncameras: []\n", "c.yaml:2: this quoted string is never closed (no closing quote before the end of the file)"},
		{"invalid UTF-8", cams + "log_level: \xff\xfe\n", "c.yaml:4: invalid UTF-8 (byte 0xff): save the file as UTF-8"},
		{"control character", cams + "log_level: \"a\x01\"\n", `c.yaml:4: control character U+0001 is not allowed (in a double-quoted string, write it as an escape such as \x01)`},
		{"second document", cams + "---\nlog_level: bogus\n", "c.yaml:4: a second YAML document starts here (after ---): config.yaml must hold one YAML document"},
		{"duration too large", cams + "    linger: 300000d\n", "c.yaml:4: cameras[0].linger: duration \"300000d\" too large (at most 106751d, about 292 years)"},
		{"duration infinite", cams + "    offline_after: infd\n", "c.yaml:4: cameras[0].offline_after: duration \"infd\" too large (at most 106751d, about 292 years)"},
		{"duration days plus too much", cams + "    linger: 106751d2000000h\n", "c.yaml:4: cameras[0].linger: duration \"106751d2000000h\" too large (at most 106751d, about 292 years)"},
		{"duration NaN", cams + "    linger: NaNd\n", `c.yaml:4: cameras[0].linger: invalid duration "NaNd"`},
		{"restart backoff too large", cams + "outputs:\n  - name: o\n    plugin: p\n    restart: {backoff: 1e300d}\n", "c.yaml:7: outputs[0].restart.backoff: duration \"1e300d\" too large (at most 106751d, about 292 years)"},
		{"alias inside itself", "cameras: &c\n  - name: a\n    source: {type: sim}\n    x: *c\n", "c.yaml:4: cameras[0].x: *c is inside the value it names"},
		{"merge of a scalar", "cameras:\n  - <<: 3\n    name: a\n", "c.yaml:2: cameras[0].<<: merges a mapping or a list of mappings, e.g. <<: *defaults"},
		{"unknown key reached by an alias", "x-src: &s {type: sim, fpx: 1}\ncameras:\n  - {name: a, source: *s}\n", "c.yaml:1: x-src: unknown key (known: auth, cameras, cors, http, log_level, outputs, plugin_auto_mtls, plugin_dir, tls, watch)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantFirstError(t, tt.yaml, tt.want)
		})
	}
}

// Anchors, aliases and merge keys mean what YAML says, in camd's keys and
// in a plugin's config block alike.
func TestParseAliasesAndMerges(t *testing.T) {
	y := `
cameras:
  - name: a
    source: &sim {type: sim, fps: 5}
    linger: &long 1m
  - name: b
    source: *sim
    linger: *long
outputs:
  - &out
    name: web
    plugin: mjpeg
    config: {listen: 127.0.0.1:8081, paths: &p [x, y]}
  - <<: *out
    name: web2
    config:
      <<: [{listen: 127.0.0.1:9, keep: 1}, {keep: 2, extra: 3}]
      listen: 127.0.0.1:8082
      paths: *p
`
	c, err := Parse("c.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Cameras[1].Source; s.Type != "sim" || s.FPS != 5 || c.Cameras[1].Linger != sdk.Duration(time.Minute) {
		t.Fatalf("aliased camera b = %+v", c.Cameras[1])
	}
	if o := c.Outputs[1]; o.Name != "web2" || o.Plugin != "mjpeg" {
		t.Fatalf("merged output = %+v", o)
	}
	raw, err := c.OutputConfigYAML(1)
	if want := "listen: 127.0.0.1:8082\npaths:\n    - x\n    - y\nkeep: 1\nextra: 3\n"; err != nil || string(raw) != want {
		t.Fatalf("merged config block =\n%s\nwant\n%s", raw, want)
	}
	if e := c.PluginError(1, "keep", "bad"); e.Line != 17 {
		t.Fatalf("a merged key is at the line that sets it: %v", e)
	}
}

func TestParseAliasBomb(t *testing.T) {
	y := "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
	for i := 'b'; i <= 'g'; i++ {
		y += fmt.Sprintf("%c: &%c [*%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c, *%c]\n", i, i, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1)
	}
	_, err := Parse("c.yaml", []byte(y))
	if err == nil || !strings.Contains(err.Error(), "aliases expand to more than 100000 values") {
		t.Fatalf("err = %v", err)
	}
}

// The config block a plugin gets depends on the settings alone: comments
// and flow or block style change nothing (a reload restarts no output for
// them); quoting that decides a type is kept.
func TestOutputConfigYAMLIsSettingsOnly(t *testing.T) {
	block := func(cfg string) string {
		c, err := Parse("c.yaml", []byte("cameras: [{name: a, source: {type: sim}}]\noutputs:\n  - name: web\n    plugin: mjpeg\n    config:"+cfg))
		if err != nil {
			t.Fatal(err)
		}
		raw, err := c.OutputConfigYAML(0)
		if err != nil {
			t.Fatal(err)
		}
		return string(raw)
	}
	want := block("\n      listen: 127.0.0.1:8081\n      paths: [a, b]\n      port: \"8080\"\n")
	for _, cfg := range []string{
		" {listen: 127.0.0.1:8081, paths: [a, b], port: \"8080\"}\n",
		"\n      # the page\n      listen: 127.0.0.1:8081 # loopback\n      paths:\n        - a\n        - b # last\n      port: \"8080\"\n      # max_viewers: 10\n",
	} {
		if got := block(cfg); got != want {
			t.Errorf("config:%s\ngives\n%s\nwant\n%s", cfg, got, want)
		}
	}
	if !strings.Contains(want, `port: "8080"`) {
		t.Errorf("a quoted number lost its quotes (it is a string):\n%s", want)
	}
}

// PluginError points at the key a plugin names, list elements included.
func TestPluginErrorLines(t *testing.T) {
	y := "cameras:\n  - name: a\n    source: {type: sim}\noutputs:\n  - name: rtc\n    plugin: webrtc\n    config:\n      ice:\n        servers:\n          - urls: [\"stun:ok.example\"]\n          - urls: [\"bogus:x\"]\n            username: u\n      grid: [[1, 2],\n             [3, 4]]\n"
	c, err := Parse("c.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	for key, line := range map[string]int{
		"":                        7,
		"ice":                     8,
		"ice.servers[1]":          11,
		"ice.servers[1].urls":     11,
		"ice.servers[1].username": 12,
		"ice.servers[1].nope":     11, // the deepest part that exists
		"ice.servers[5].urls":     9,
		"grid[1][0]":              14,
	} {
		if got := c.PluginError(0, key, "x").Line; got != line {
			t.Errorf("PluginError(%q) line = %d, want %d", key, got, line)
		}
	}
}
