// Package config reads camd's config.yaml: strictly (unknown keys are
// errors), with defaults, and with every error pointing at file:line and
// the key.
package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/camd/camd/device"
	"github.com/camd/camd/internal/redact"
	"github.com/camd/camd/sdk"
)

// Config is the whole of config.yaml.
type Config struct {
	HTTP      HTTP   `yaml:"http"`
	PluginDir string `yaml:"plugin_dir"`
	LogLevel  string `yaml:"log_level"`
	// PluginAutoMTLS turns on go-plugin's mutual TLS between camd and its
	// plugins. Off by default: the plugin sockets live in a private
	// directory, and TLS costs 30-70% more CPU per frame.
	PluginAutoMTLS bool `yaml:"plugin_auto_mtls"`
	// Watch reloads the config when the file changes, as SIGHUP does.
	Watch bool `yaml:"watch"`
	// Auth, TLS and CORS apply to camd's API and every output.
	Auth    *Auth    `yaml:"auth"`
	TLS     *TLS     `yaml:"tls"`
	CORS    *CORS    `yaml:"cors"`
	Cameras []Camera `yaml:"cameras"`
	Outputs []Output `yaml:"outputs"`

	// Path is the file the config was read from.
	Path string `yaml:"-"`
	// lines maps key paths ("outputs[1].config") to their line in Path.
	lines map[string]int
}

// HTTP is the daemon's own HTTP listener (/healthz, /api/status).
type HTTP struct {
	Listen string `yaml:"listen"`
	// TLS overrides the top-level tls for this listener.
	TLS *TLS `yaml:"tls"`
	// AllowedHosts are the host names (besides IP addresses, localhost and
	// the listen host) the API answers to, e.g. the name a reverse proxy
	// or your LAN uses. Others are refused, against DNS rebinding.
	AllowedHosts []string `yaml:"allowed_hosts"`
}

// Camera is one entry of cameras[].
type Camera struct {
	Name   string `yaml:"name"`
	Source Source `yaml:"source"`
	// OfflineAfter is how long without a frame before the camera counts as
	// offline and outputs get a placeholder picture saying so.
	OfflineAfter sdk.Duration `yaml:"offline_after"`
	// OnDemand connects to the device only while an output wants the
	// camera's frames (a viewer, a timelapse), and Linger after the last
	// one leaves: the board sleeps while nobody watches.
	OnDemand bool         `yaml:"on_demand"`
	Linger   sdk.Duration `yaml:"linger"`
}

// Source is cameras[].source.
type Source struct {
	Type      string  `yaml:"type"`
	URL       string  `yaml:"url"`
	StreamURL string  `yaml:"stream_url"`
	Mode      string  `yaml:"mode"`
	FPS       float64 `yaml:"fps"`
	Size      string  `yaml:"size"`
	Quality   int     `yaml:"quality"`
	// Token is the board's CAMSERVER_TOKEN, sent as a bearer token.
	Token string `yaml:"token"`
	// VerifyTLS false accepts the device's HTTPS certificate unchecked
	// (a camera's self-signed one). Default true.
	VerifyTLS *bool `yaml:"verify_tls"`
}

// Output is one entry of outputs[].
type Output struct {
	Name    string   `yaml:"name"`
	Plugin  string   `yaml:"plugin"`
	Command string   `yaml:"command"`
	SHA256  string   `yaml:"sha256"`
	Cameras []string `yaml:"cameras"`
	Restart Restart  `yaml:"restart"`
	// Auth is required (the default whenever auth is configured) or none
	// (e.g. a public still).
	Auth string `yaml:"auth"`
	// Config is the plugin's own block, passed to it verbatim; the plugin
	// validates it.
	Config yaml.Node `yaml:"config"`
}

// Restart is outputs[].restart: how a plugin that died is restarted. The
// wait starts at Backoff and doubles up to MaxBackoff; it starts over once
// the plugin has run for a minute.
type Restart struct {
	Backoff    sdk.Duration `yaml:"backoff"`
	MaxBackoff sdk.Duration `yaml:"max_backoff"`
}

// Defaults.
const (
	DefaultListen    = "127.0.0.1:8080"
	DefaultPluginDir = "bin"
	// DefaultOfflineAfter: a camera silent this long is shown as offline.
	DefaultOfflineAfter = sdk.Duration(2 * time.Second)
	// DefaultLinger: an on_demand camera stays connected this long after
	// its last viewer, so one who reloads the page finds it awake.
	DefaultLinger = sdk.Duration(10 * time.Second)
)

// Error is a config problem at a place in the file.
type Error struct {
	File string
	Line int    // 0 when unknown
	Key  string // key path, e.g. "cameras[0].source.url"
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a config, in file order.
type Errors []*Error

func (es Errors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Load reads and validates the config at path.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, b)
}

// Parse decodes and validates a config; path is used in error messages and
// to resolve a relative plugin_dir.
func Parse(path string, data []byte) (*Config, error) {
	c := &Config{Path: path, lines: map[string]int{}}
	docs, err := parseDocuments(data)
	if err != nil {
		return nil, Errors{syntaxError(path, data, err)}
	}
	for _, d := range docs[min(1, len(docs)):] {
		// A trailing "---", with nothing or only comments after it, is
		// no second document.
		if len(d.Content) > 0 && !(d.Content[0].Kind == yaml.ScalarNode && d.Content[0].Tag == "!!null") {
			return nil, Errors{{File: path, Line: d.Line, Msg: "a second YAML document starts here (after ---): config.yaml must hold one YAML document"}}
		}
	}
	if len(docs) == 0 || len(docs[0].Content) == 0 {
		return nil, Errors{{File: path, Msg: "empty config"}}
	}
	doc := docs[0]
	// Expand before resolving aliases, so that a value an alias shares is
	// expanded once ("$$" must not become "$" and then a reference).
	if errs := expandEnv(path, doc, osLookup); len(errs) > 0 {
		return nil, errs
	}
	if errs := resolveRefs(path, doc); len(errs) > 0 {
		return nil, errs
	}
	root := doc.Content[0]
	var errs Errors
	for _, e := range sdk.DecodeNode(root, c, c.lines) {
		errs = append(errs, &Error{File: path, Line: e.Line, Key: e.Key, Msg: e.Message})
	}
	if len(errs) > 0 {
		return nil, errs
	}
	c.setDefaults()
	if errs := c.validate(); len(errs) > 0 {
		return nil, errs
	}
	return c, nil
}

func (c *Config) setDefaults() {
	if c.HTTP.Listen == "" {
		c.HTTP.Listen = DefaultListen
	}
	if c.PluginDir == "" {
		c.PluginDir = DefaultPluginDir
	}
	if !filepath.IsAbs(c.PluginDir) {
		c.PluginDir = filepath.Join(filepath.Dir(c.Path), c.PluginDir)
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	for i := range c.Cameras {
		s := &c.Cameras[i].Source
		if s.Type == "esp32" && s.Mode == "" {
			s.Mode = "capture"
		}
		if c.Cameras[i].Linger == 0 {
			c.Cameras[i].Linger = DefaultLinger
		}
		if c.Cameras[i].OfflineAfter == 0 {
			c.Cameras[i].OfflineAfter = DefaultOfflineAfter
		}
	}
	for i := range c.Outputs {
		o := &c.Outputs[i]
		if o.Restart.Backoff == 0 {
			o.Restart.Backoff = sdk.Duration(250 * time.Millisecond)
		}
		if o.Restart.MaxBackoff == 0 {
			o.Restart.MaxBackoff = max(o.Restart.Backoff, sdk.Duration(30*time.Second))
		}
		if len(o.Cameras) == 0 {
			for _, cam := range c.Cameras {
				o.Cameras = append(o.Cameras, cam.Name)
			}
		}
	}
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

func (c *Config) validate() Errors {
	var errs Errors
	fail := func(key, format string, args ...any) {
		errs = append(errs, &Error{File: c.Path, Line: c.lineOf(key), Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	if _, _, err := net.SplitHostPort(c.HTTP.Listen); err != nil {
		fail("http.listen", "want host:port, e.g. 127.0.0.1:8080")
	} else if !IsLoopback(c.HTTP.Listen) && !c.OpenAllowed() {
		fail("http.listen", "%s", OpenRefusal(c.HTTP.Listen))
	}
	c.checkAuth(fail)
	c.checkTLS("tls", c.TLS, fail)
	c.checkTLS("http.tls", c.HTTP.TLS, fail)
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		fail("log_level", "unknown level %q (want debug, info, warn or error)", c.LogLevel)
	}
	if len(c.Cameras) == 0 {
		fail("cameras", "no cameras configured")
	}
	cams := map[string]bool{}
	for i, cam := range c.Cameras {
		p := fmt.Sprintf("cameras[%d]", i)
		switch {
		case cam.Name == "":
			fail(p+".name", "missing")
		case !nameRE.MatchString(cam.Name):
			fail(p+".name", "%q: use letters, digits, - and _ (it becomes part of URLs)", cam.Name)
		case cams[cam.Name]:
			fail(p+".name", "duplicate camera name %q", cam.Name)
		}
		cams[cam.Name] = true
		if cam.OfflineAfter < sdk.Duration(100*time.Millisecond) {
			fail(p+".offline_after", "must be at least 100ms, e.g. 2s")
		}
		if cam.Linger < 0 {
			fail(p+".linger", "must not be negative, e.g. 10s")
		}
		if _, err := cam.Source.Device(); err != nil {
			var fes fieldErrors
			if errors.As(err, &fes) {
				for _, fe := range fes {
					fail(p+".source."+fe.key, "%s", fe.msg)
				}
			} else {
				fail(p+".source", "%v", err)
			}
		}
	}
	outs := map[string]bool{}
	for i, o := range c.Outputs {
		p := fmt.Sprintf("outputs[%d]", i)
		switch {
		case o.Name == "":
			fail(p+".name", "missing")
		case !nameRE.MatchString(o.Name):
			fail(p+".name", "%q: use letters, digits, - and _", o.Name)
		case outs[o.Name]:
			fail(p+".name", "duplicate output name %q", o.Name)
		}
		outs[o.Name] = true
		switch {
		case o.Plugin == "" && o.Command == "":
			fail(p, "set plugin (e.g. plugin: mjpeg) or command")
		case o.Plugin != "" && o.Command != "":
			fail(p+".command", "set plugin or command, not both")
		case o.Plugin != "" && !nameRE.MatchString(o.Plugin):
			fail(p+".plugin", "%q is not a plugin name", o.Plugin)
		}
		if o.SHA256 != "" && !regexp.MustCompile(`^[0-9a-fA-F]{64}$`).MatchString(o.SHA256) {
			fail(p+".sha256", "want 64 hex digits")
		}
		if o.Restart.Backoff < 0 || o.Restart.MaxBackoff < o.Restart.Backoff {
			fail(p+".restart", "want 0 < backoff <= max_backoff")
		}
		for j, cam := range o.Cameras {
			if !cams[cam] {
				fail(fmt.Sprintf("%s.cameras[%d]", p, j), "unknown camera %q", cam)
			}
		}
		switch o.Auth {
		case "", AuthRequired, AuthNone:
		default:
			fail(p+".auth", "unknown value %q (want required or none)", o.Auth)
		}
		if o.Config.Kind != 0 && o.Config.Kind != yaml.MappingNode && o.Config.Tag != "!!null" {
			fail(p+".config", "must be a mapping of keys to values")
		}
	}
	return errs
}

// lineOf returns the line of key, or of its nearest parent that has one.
func (c *Config) lineOf(key string) int {
	for key != "" {
		if l, ok := c.lines[key]; ok {
			return l
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return 0
}

type fieldError struct{ key, msg string }

func (e *fieldError) Error() string { return e.key + ": " + e.msg }

// fieldErrors is every problem with one source, so a user fixes them all
// in one go.
type fieldErrors []*fieldError

func (es fieldErrors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "; ")
}

// Device returns the device.SourceConfig for s, or every problem with s.
func (s Source) Device() (device.SourceConfig, error) {
	d := device.SourceConfig{Type: s.Type, URL: s.URL, StreamURL: s.StreamURL, Mode: s.Mode, FPS: s.FPS, Quality: s.Quality, Token: s.Token,
		InsecureTLS: s.VerifyTLS != nil && !*s.VerifyTLS}
	var errs fieldErrors
	fail := func(key, format string, args ...any) {
		errs = append(errs, &fieldError{key, fmt.Sprintf(format, args...)})
	}
	switch s.Type {
	case "":
		fail("type", "missing (want sim, esp32 or mjpeg)")
	case "sim":
		if s.URL != "" {
			fail("url", "not used by a sim camera")
		}
		if s.Token != "" {
			fail("token", "not used by a sim camera")
		}
		if s.VerifyTLS != nil {
			fail("verify_tls", "not used by a sim camera")
		}
	case "esp32", "mjpeg":
		if s.URL == "" {
			fail("url", "missing")
		} else if err := checkURL(s.URL); err != nil {
			fail("url", "%v", err)
		}
		if s.StreamURL != "" {
			if err := checkURL(s.StreamURL); err != nil {
				fail("stream_url", "%v", err)
			}
		}
		if s.Type == "esp32" && s.Mode != "capture" && s.Mode != "stream" {
			fail("mode", "unknown mode %q (want capture or stream)", s.Mode)
		}
		if s.Type == "mjpeg" && s.Mode != "" {
			fail("mode", "only esp32 sources have a mode")
		}
	default:
		fail("type", "unknown source type %q (want sim, esp32 or mjpeg)", s.Type)
	}
	if s.FPS < 0 || s.FPS > 240 {
		fail("fps", "want 0 to 240")
	}
	if s.Quality < 0 || s.Quality > 100 {
		fail("quality", "want 1 to 100")
	}
	if s.Size != "" {
		if s.Type != "sim" {
			fail("size", "only a sim camera has a size (set the resolution on the device)")
		} else if w, h, err := device.ParseSize(s.Size); err != nil {
			fail("size", "%v", err)
		} else {
			d.Width, d.Height = w, h
		}
	}
	if len(errs) > 0 {
		return d, errs
	}
	return d, nil
}

func checkURL(u string) error {
	if l := strings.ToLower(u); !strings.HasPrefix(l, "http://") && !strings.HasPrefix(l, "https://") {
		return fmt.Errorf("%q: want an http:// or https:// URL", u)
	}
	return nil
}

// Camera returns the camera named name, or nil.
func (c *Config) Camera(name string) *Camera {
	if i := c.CameraIndex(name); i >= 0 {
		return &c.Cameras[i]
	}
	return nil
}

// CameraIndex returns the index of the camera named name, or -1.
func (c *Config) CameraIndex(name string) int {
	return slices.IndexFunc(c.Cameras, func(cam Camera) bool { return cam.Name == name })
}

// Output returns the output named name, or nil.
func (c *Config) Output(name string) *Output {
	if i := slices.IndexFunc(c.Outputs, func(o Output) bool { return o.Name == name }); i >= 0 {
		return &c.Outputs[i]
	}
	return nil
}

// Secrets returns every secret the config holds (camera tokens, passwords
// and tokens in camera URLs), so camd can keep them out of its logs and
// API.
func (c *Config) Secrets() []string {
	var out []string
	for _, cam := range c.Cameras {
		s := cam.Source
		out = append(out, s.Token)
		out = append(out, redact.SecretsOfURL(s.URL)...)
		out = append(out, redact.SecretsOfURL(s.StreamURL)...)
	}
	if c.Auth != nil {
		for _, t := range c.Auth.Tokens {
			out = append(out, t.Token)
		}
		for _, u := range c.Auth.Users {
			out = append(out, u.PasswordHash)
		}
	}
	for i := range c.Outputs {
		out = append(out, secretsOfNode(&c.Outputs[i].Config, "")...)
	}
	return out
}

// secretKeyRE matches the keys of plugin config values that are secrets.
var secretKeyRE = regexp.MustCompile(`(?i)(^|[_-])(password|passwd|pass|secret|token|credential|api_?key|passphrase)$`)

// secretsOfNode returns the secrets in a plugin's config block, which camd
// does not know the shape of: the values of secret-looking keys, and the
// passwords and token-like parameters of URLs anywhere in it.
func secretsOfNode(n *yaml.Node, key string) []string {
	var out []string
	switch n.Kind {
	case yaml.ScalarNode:
		if secretKeyRE.MatchString(key) {
			out = append(out, n.Value)
		}
		if strings.Contains(n.Value, "://") {
			out = append(out, redact.SecretsOfURL(n.Value)...)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			out = append(out, secretsOfNode(n.Content[i+1], n.Content[i].Value)...)
		}
	case yaml.SequenceNode, yaml.DocumentNode:
		for _, c := range n.Content {
			out = append(out, secretsOfNode(c, key)...)
		}
	}
	return out
}

// OutputConfigYAML returns output i's config block re-encoded as YAML,
// without comments and in block style: the same settings give the same
// bytes, so a reload that only adds a comment or reflows the block
// restarts no output.
func (c *Config) OutputConfigYAML(i int) ([]byte, error) {
	n := c.Outputs[i].Config
	if n.Kind == 0 {
		return nil, nil
	}
	return yaml.Marshal(plainNode(&n))
}

// plainNode returns a copy of n without comments, its mappings and
// sequences in block style. Scalars keep their style: quoting can decide
// a value's type ("8080" is a string).
func plainNode(n *yaml.Node) *yaml.Node {
	c := *n
	c.HeadComment, c.LineComment, c.FootComment = "", "", ""
	if c.Kind == yaml.MappingNode || c.Kind == yaml.SequenceNode {
		c.Style &^= yaml.FlowStyle
	}
	if len(n.Content) > 0 {
		c.Content = make([]*yaml.Node, len(n.Content))
		for i, k := range n.Content {
			c.Content[i] = plainNode(k)
		}
	}
	return &c
}

// ErrorAt returns an Error for key (a path like "outputs[1]"), at its line.
func (c *Config) ErrorAt(key, msg string) *Error {
	return &Error{File: c.Path, Line: c.lineOf(key), Key: key, Msg: msg}
}

// PluginError places an error a plugin reported about its config block
// (key is a path inside the block) in the file.
func (c *Config) PluginError(output int, key, msg string) *Error {
	p := fmt.Sprintf("outputs[%d].config", output)
	line := c.lineOf(p)
	if line == 0 {
		line = c.lineOf(fmt.Sprintf("outputs[%d]", output))
	}
	if key != "" {
		if l := nodeLine(&c.Outputs[output].Config, key); l > 0 {
			line = l
		}
		p += "." + key
	}
	return &Error{File: c.Path, Line: line, Key: p, Msg: msg}
}

// PluginPath returns the plugin binary of output o.
func (c *Config) PluginPath(o Output) string {
	if o.Command != "" {
		if filepath.IsAbs(o.Command) || !strings.ContainsRune(o.Command, filepath.Separator) {
			return o.Command
		}
		return filepath.Join(filepath.Dir(c.Path), o.Command)
	}
	return filepath.Join(c.PluginDir, "camd-plugin-"+o.Plugin)
}
