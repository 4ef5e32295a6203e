package main

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/camd/camd/internal/testcert"
)

// The command line, as a person meets it.
func TestCommandLine(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		code     int
		out, err string // substrings of stdout and stderr
	}{
		{args: []string{"version"}, code: 0, out: "camd dev (plugin contract v1)"},
		{args: []string{"-version"}, code: 0, out: "camd dev (plugin contract v1)"},
		{args: []string{"run", "-version"}, code: 0, out: "camd dev"},
		{args: []string{"help"}, code: 0, out: "commands:"},
		{args: []string{"-h"}, code: 0, err: "-config string"},
		{args: []string{"validate", "-h"}, code: 0, err: "usage: camd validate [flags]"},
		{args: []string{"bogus"}, code: 2, err: `camd: unknown command "bogus"`},
		{args: []string{"run", "extra"}, code: 2, err: `unexpected argument "extra"`},
		{args: []string{"run", "-nope"}, code: 2, err: "flag provided but not defined: -nope"},
		{args: []string{"run", "-config", "/nonexistent/camd.yaml"}, code: 1, err: "no such file or directory"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(tc.args, &out, &errb); code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out.String(), errb.String())
			}
			if !strings.Contains(out.String(), tc.out) || !strings.Contains(errb.String(), tc.err) {
				t.Fatalf("stdout %q lacks %q, or stderr %q lacks %q", out.String(), tc.out, errb.String(), tc.err)
			}
		})
	}
}

// The tests below run the real camd: `camd run` as a subprocess on
// 127.0.0.1 ports, and the command under test (reload, validate) through
// run, in this process, as a person runs it.

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binaries builds camd and the mjpeg plugin once, named as make build does.
func binaries(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "camd-cmd-test-"); buildErr != nil {
			return
		}
		for _, b := range []struct{ out, pkg string }{{"camd", "."}, {"camd-plugin-mjpeg", "../../plugins/mjpeg"}} {
			if out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, b.out), b.pkg).CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// daemonProc is a `camd run` subprocess.
type daemonProc struct {
	cmd  *exec.Cmd
	logs *syncBuffer
}

// startCamd runs `camd run -config path` (with env added to the test's)
// until the test ends, and returns once camd serves.
func startCamd(t *testing.T, path string, env ...string) *daemonProc {
	t.Helper()
	d := &daemonProc{logs: &syncBuffer{}}
	d.cmd = exec.Command(filepath.Join(binaries(t), "camd"), "run", "-config", path)
	d.cmd.Env = append(os.Environ(), env...)
	d.cmd.Stdout, d.cmd.Stderr = d.logs, d.logs
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		d.cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(time.Minute):
			d.cmd.Process.Kill()
			<-done
			t.Errorf("camd did not stop on SIGTERM")
		}
		if t.Failed() {
			t.Logf("camd's log:\n%s", d.logs.String())
		}
	})
	deadline := time.After(3 * time.Minute) // a busy machine starts plugins slowly
	for !strings.Contains(d.logs.String(), `msg="camd running"`) {
		select {
		case <-done:
			t.Fatalf("camd exited:\n%s", d.logs.String())
		case <-deadline:
			t.Fatalf("camd did not start:\n%s", d.logs.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return d
}

// lastReload returns when camd last reloaded (zero: never), from its
// /api/status at base (with an admin token when it has auth).
func lastReload(t *testing.T, base, token string) time.Time {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+"/api/status", nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	c := &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Reload *struct {
			At time.Time `json:"at"`
		} `json:"reload"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/api/status: %s, %v", resp.Status, err)
	}
	if st.Reload == nil {
		return time.Time{}
	}
	return st.Reload.At
}

// freeAddr returns a 127.0.0.1 address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// writeConfig writes a config file: the test's plugin_dir, then body.
func writeConfig(t *testing.T, path, body string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte("plugin_dir: "+binaries(t)+"\n"+body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// bumpFPS changes the camera's fps in the file, so a reload restarts it.
func bumpFPS(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`fps: (\d+)`)
	m := re.FindSubmatch(b)
	if m == nil {
		t.Fatalf("no fps in %s", path)
	}
	n, _ := strconv.Atoi(string(m[1]))
	if err := os.WriteFile(path, re.ReplaceAll(b, []byte("fps: "+strconv.Itoa(n%20+1))), 0o644); err != nil {
		t.Fatal(err)
	}
}

// cli runs a camd command in this process, as a person runs it, with env
// set for it (and CAMD_TOKEN empty unless set).
func cli(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	t.Setenv("CAMD_TOKEN", "")
	for k, v := range env {
		t.Setenv(k, v)
	}
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// check asserts an exit code, substrings of stdout and stderr, and that no
// secret shows in either.
func check(t *testing.T, code int, stdout, stderr string, wantCode int, wantOut, wantErr, secrets []string) {
	t.Helper()
	if code != wantCode {
		t.Errorf("exit %d, want %d", code, wantCode)
	}
	for _, w := range wantOut {
		if !strings.Contains(stdout, w) {
			t.Errorf("stdout lacks %q", w)
		}
	}
	for _, w := range wantErr {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr lacks %q", w)
		}
	}
	for _, s := range secrets {
		if strings.Contains(stdout+stderr, s) {
			t.Errorf("a token shows in the output")
		}
	}
	if t.Failed() {
		t.Logf("stdout:\n%s\nstderr:\n%s", stdout, stderr)
	}
}

// Test tokens. ops is an admin token the config takes from ${CAMD_TEST_OPS};
// script is another admin token; view may watch but not use the API.
const (
	opsToken    = "ops-5f1c0e9a7b2d4c68"
	scriptToken = "script-2b7e151628aed2a6"
	viewToken   = "view-9d3f8a1c5e7b2046"
	wrongToken  = "wrong-0000000000000000"
)

var testSecrets = []string{opsToken, scriptToken, viewToken, wrongToken}

const authBlock = `auth:
  tokens:
    - {name: ha, token: ` + viewToken + `, scope: view}
    - {name: ops, token: "${CAMD_TEST_OPS}", scope: admin}
    - {name: script, token: ` + scriptToken + `, scope: admin}
`

// viewOnlyAuth has no admin token: camd reload and validate need one from
// elsewhere.
const viewOnlyAuth = `auth:
  tokens:
    - {name: ha, token: ` + viewToken + `, scope: view}
`

// notCamdServer is an HTTP server on a port a config names for camd's API. It
// records whether it was ever sent a credential, or asked anything but
// /healthz.
func notCamdServer(t *testing.T) (addr string, told func() bool) {
	t.Helper()
	var bad atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" || r.URL.Query().Get("token") != "" || r.URL.Path != "/healthz" {
			bad.Store(true)
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), bad.Load
}

// camd reload authenticates: with the config's admin token (after ${VAR}
// expansion), $CAMD_TOKEN or -token-file, and says what to do without one.
func TestReloadAuth(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	path := writeConfig(t, filepath.Join(dir, "config.yaml"), "http: {listen: "+addr+"}\n"+authBlock+
		"cameras:\n  - {name: sim, source: {type: sim, size: 160x120, fps: 5}}\n")
	startCamd(t, path, "CAMD_TEST_OPS="+opsToken)
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(scriptToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		env     map[string]string
		flags   []string
		code    int
		out     []string
		err     []string
		applied bool // the change reached camd
	}{{
		name: "admin token in the config", env: map[string]string{"CAMD_TEST_OPS": opsToken},
		code: 0, out: []string{"camd reload: ok", "camera sim: restarted"}, applied: true,
	}, {
		name: "token in CAMD_TOKEN", env: map[string]string{"CAMD_TEST_OPS": opsToken, "CAMD_TOKEN": scriptToken},
		code: 0, out: []string{"camd reload: ok", "camera sim: restarted"}, applied: true,
	}, {
		name: "CAMD_TOKEN comes before the config's", env: map[string]string{"CAMD_TEST_OPS": opsToken, "CAMD_TOKEN": wrongToken},
		code: 1, err: []string{"refused the token in $CAMD_TOKEN (401 Unauthorized)", "is it one of camd's admin tokens?"},
	}, {
		name: "a view token may not reload", env: map[string]string{"CAMD_TEST_OPS": opsToken, "CAMD_TOKEN": viewToken},
		code: 1, err: []string{"403 Forbidden", "ha may not use camd's API"},
	}, {
		name: "token in -token-file", env: map[string]string{"CAMD_TEST_OPS": opsToken, "CAMD_TOKEN": wrongToken},
		flags: []string{"-token-file", tokenFile},
		code:  0, out: []string{"camd reload: ok", "camera sim: restarted"}, applied: true,
	}, {
		name: "unreadable -token-file", env: map[string]string{"CAMD_TEST_OPS": opsToken},
		flags: []string{"-token-file", filepath.Join(dir, "nonexistent")},
		code:  1, err: []string{"-token-file: open " + filepath.Join(dir, "nonexistent")},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			bumpFPS(t, path)
			before := lastReload(t, "http://"+addr, opsToken)
			code, out, errs := cli(t, tc.env, append([]string{"reload", "-config", path}, tc.flags...)...)
			check(t, code, out, errs, tc.code, tc.out, tc.err, testSecrets)
			if got := lastReload(t, "http://"+addr, opsToken) != before; got != tc.applied {
				t.Errorf("camd reloaded: %v, want %v", got, tc.applied)
			}
		})
	}

	t.Run("no admin token at hand", func(t *testing.T) {
		users := writeConfig(t, filepath.Join(dir, "users.yaml"), "http: {listen: "+addr+"}\n"+
			"auth:\n  users:\n    - {name: alice, password_hash: \""+bcryptHash(t, "alice's password")+"\"}\n"+
			"  tokens:\n    - {name: ha, token: "+viewToken+", scope: view}\n"+
			"cameras:\n  - {name: sim, source: {type: sim}}\n")
		before := lastReload(t, "http://"+addr, opsToken)
		code, out, errs := cli(t, nil, "reload", "-config", users)
		check(t, code, out, errs, 1, nil, []string{"configures auth", "no admin token", "set CAMD_TOKEN", "-token-file", "systemctl reload camd", "kill -HUP"}, testSecrets)
		if lastReload(t, "http://"+addr, opsToken) != before {
			t.Errorf("camd reloaded")
		}
	})

	t.Run("a program that is not camd on camd's port", func(t *testing.T) {
		squat, told := notCamdServer(t)
		path := writeConfig(t, filepath.Join(dir, "squat.yaml"), "http: {listen: "+squat+"}\n"+authBlock+
			"cameras:\n  - {name: sim, source: {type: sim}}\n")
		code, out, errs := cli(t, map[string]string{"CAMD_TEST_OPS": opsToken}, "reload", "-config", path)
		check(t, code, out, errs, 1, nil, []string{"what answers at http://" + squat + " is not camd (its /healthz: 404 Not Found)"}, testSecrets)
		if told() {
			t.Errorf("camd reload sent a token, or a request, to a program that is not camd")
		}
	})

	t.Run("camd not running", func(t *testing.T) {
		down := freeAddr(t)
		path := writeConfig(t, filepath.Join(dir, "down.yaml"), "http: {listen: "+down+"}\n"+authBlock+
			"cameras:\n  - {name: sim, source: {type: sim}}\n")
		code, out, errs := cli(t, map[string]string{"CAMD_TEST_OPS": opsToken}, "reload", "-config", path)
		check(t, code, out, errs, 1, nil, []string{"no camd answers at http://" + down, "connection refused"}, testSecrets)
	})
}

// What camd reload and validate say when camd refuses them.
func TestRefusal(t *testing.T) {
	for _, tc := range []struct {
		name  string
		token string
		code  int
		body  string
		want  string
	}{
		{"no credential", "", 401, "authentication required", "wants an admin credential (401 Unauthorized): set CAMD_TOKEN to an admin token, or pass -token-file FILE"},
		{"wrong token", wrongToken, 401, "authentication required", "refused the token in $CAMD_TOKEN (401 Unauthorized): is it one of camd's admin tokens?"},
		{"view token", viewToken, 403, "ha may not use camd's API (needs an admin token or a user)\n", "refused the token in $CAMD_TOKEN (403 Forbidden): ha may not use camd's API"},
		{"too many failures", wrongToken, 429, "too many failed logins from your address; wait a minute", "(429 Too Many Requests): too many failed logins from this machine of late; wait a minute and try again"},
		{"anything else", opsToken, 500, "boom\nmore", "500 Internal Server Error: boom"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &client{base: "http://camd", token: tc.token}
			if tc.token != "" {
				c.from = "the token in $CAMD_TOKEN"
			}
			err := c.refusal(&http.Response{StatusCode: tc.code, Status: fmt.Sprintf("%d %s", tc.code, http.StatusText(tc.code))}, []byte(tc.body))
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%q, want %q", err, tc.want)
			}
			for _, s := range testSecrets {
				if strings.Contains(err.Error(), s) {
					t.Errorf("a token shows in %q", err)
				}
			}
		})
	}
}

func bcryptHash(t *testing.T, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// writeCert writes a self-signed certificate for the name camd.test only
// (not 127.0.0.1, where camd reload reaches camd) and its key.
func writeCert(t *testing.T, dir, name string) (cert, key string) {
	t.Helper()
	cert, key = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	testcert.New(t, "camd.test").Write(t, cert, key)
	return cert, key
}

// With tls (top-level or http.tls) camd reload speaks HTTPS, trusting
// the certificate the config names, and no other.
func TestReloadTLS(t *testing.T) {
	for _, where := range []string{"top-level tls", "http.tls"} {
		t.Run(where, func(t *testing.T) {
			dir := t.TempDir()
			cert, key := writeCert(t, dir, "camd")
			otherCert, otherKey := writeCert(t, dir, "other")
			addr := freeAddr(t)
			config := func(cert, key string) string {
				tlsBlock := fmt.Sprintf("{cert: %s, key: %s}", cert, key)
				head := "http: {listen: " + addr + "}\ntls: " + tlsBlock + "\n"
				if where == "http.tls" {
					head = "http: {listen: " + addr + ", tls: " + tlsBlock + "}\n"
				}
				return head + authBlock + "cameras:\n  - {name: sim, source: {type: sim, size: 160x120, fps: 5}}\n"
			}
			path := writeConfig(t, filepath.Join(dir, "config.yaml"), config(cert, key))
			d := startCamd(t, path, "CAMD_TEST_OPS="+opsToken)
			if !strings.Contains(d.logs.String(), "api=https://") {
				t.Fatalf("camd does not serve HTTPS")
			}
			env := map[string]string{"CAMD_TEST_OPS": opsToken}

			bumpFPS(t, path)
			code, out, errs := cli(t, env, "reload", "-config", path)
			check(t, code, out, errs, 0, []string{"camd reload: ok", "camera sim: restarted"}, nil, testSecrets)
			first := lastReload(t, "https://"+addr, opsToken)

			// camd validate asks camd over HTTPS too.
			code, out, errs = cli(t, env, "validate", "-config", path)
			check(t, code, out, errs, 0, nil, []string{"http.listen: " + addr + " is in use by the running camd: fine, a reload keeps it"}, testSecrets)

			// The file now names another certificate than camd serves:
			// camd reload must not talk to that server.
			writeConfig(t, path, config(otherCert, otherKey))
			code, out, errs = cli(t, env, "reload", "-config", path)
			check(t, code, out, errs, 1, nil, []string{"is not the camd of " + path + ", so nothing was sent to it", "not the one in " + otherCert}, testSecrets)
			if lastReload(t, "https://"+addr, opsToken) != first {
				t.Errorf("camd reloaded")
			}
		})
	}
}

// camd reload -config FILE reaches the camd at FILE's http.listen, which
// re-reads its own file: when that is not FILE, it reloads nothing and
// says which file camd runs. Another name for the same file is the same.
func TestReloadOtherFile(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	running := writeConfig(t, filepath.Join(dir, "running.yaml"), "http: {listen: "+addr+"}\n"+
		"cameras:\n  - {name: sim, source: {type: sim, size: 160x120, fps: 5}}\n")
	other := writeConfig(t, filepath.Join(dir, "other.yaml"), "http: {listen: "+addr+"}\n"+
		"cameras:\n  - {name: garden, source: {type: sim, size: 160x120, fps: 5}}\n")
	link := filepath.Join(dir, "link.yaml")
	if err := os.Symlink(running, link); err != nil {
		t.Fatal(err)
	}
	startCamd(t, running)
	for _, tc := range []struct {
		name     string
		file     string
		cwd      string // run camd reload there
		code     int
		out, err []string
		reloaded bool
	}{{
		name: "another file", file: other,
		code: 1, err: []string{"the camd at http://" + addr + " (pid ", "runs " + running + ", not " + other, "Nothing was reloaded"},
	}, {
		name: "the same file by a symlink", file: link,
		code: 0, out: []string{"camd reload: ok", "camera sim: restarted"}, reloaded: true,
	}, {
		name: "the same file, relative", file: "running.yaml", cwd: dir,
		code: 0, out: []string{"camd reload: ok", "camera sim: restarted"}, reloaded: true,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.cwd != "" {
				t.Chdir(tc.cwd)
			}
			bumpFPS(t, running)
			before := lastReload(t, "http://"+addr, "")
			code, out, errs := cli(t, nil, "reload", "-config", tc.file)
			check(t, code, out, errs, tc.code, tc.out, tc.err, nil)
			if got := lastReload(t, "http://"+addr, "") != before; got != tc.reloaded {
				t.Errorf("camd reloaded: %v, want %v", got, tc.reloaded)
			}
		})
	}
}

// camd validate beside a running camd: the addresses that camd holds are
// fine when it runs the file validated (a reload keeps them); when it
// runs another file, or cannot be asked, they are errors that say so; and
// any other program's are errors naming the address.
func TestValidateBesideRunningCamd(t *testing.T) {
	dir := t.TempDir()
	api, web := freeAddr(t), freeAddr(t)
	config := func(api, auth, extra string) string {
		return "http: {listen: " + api + "}\n" + auth +
			"cameras:\n  - {name: sim, source: {type: sim, size: 160x120, fps: 5}}\n" +
			"outputs:\n  - name: web\n    plugin: mjpeg\n    config: {listen: " + web + "}\n" + extra
	}
	path := writeConfig(t, filepath.Join(dir, "config.yaml"), config(api, authBlock, ""))
	startCamd(t, path, "CAMD_TEST_OPS="+opsToken)
	link := filepath.Join(dir, "link.yaml")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	// The same addresses in other files: one with the admin token, one without.
	other := writeConfig(t, filepath.Join(dir, "other.yaml"), config(api, authBlock, ""))
	viewOnly := writeConfig(t, filepath.Join(dir, "view-only.yaml"), config(api, viewOnlyAuth, ""))
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(scriptToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// Another program's port, for an output of a config whose API port is
	// free; and another program on camd's API port.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyAddr := busy.Addr().String()
	withBusy := writeConfig(t, filepath.Join(dir, "busy.yaml"), "http: {listen: "+freeAddr(t)+"}\n"+
		"cameras:\n  - {name: sim, source: {type: sim, size: 160x120, fps: 5}}\n"+
		"outputs:\n  - name: stills\n    plugin: mjpeg\n    config: {listen: "+busyAddr+"}\n")
	squat, told := notCamdServer(t)
	apiTaken := writeConfig(t, filepath.Join(dir, "api-taken.yaml"), "http: {listen: "+squat+"}\n"+authBlock+
		"cameras:\n  - {name: sim, source: {type: sim, size: 160x120, fps: 5}}\n")

	ops := map[string]string{"CAMD_TEST_OPS": opsToken}
	inUse := ": bind: address already in use "
	heldBy := "(held by the camd at http://" + api + " (pid "
	for _, tc := range []struct {
		name  string
		file  string
		env   map[string]string
		flags []string
		code  int
		err   []string
	}{{
		name: "the running camd's own file", file: path, env: ops,
		code: 0, err: []string{
			"http.listen: " + api + " is in use by the running camd: fine, a reload keeps it",
			"outputs[0].config.listen: " + web + " is in use by the running camd: fine, a reload keeps it",
			path + ": ok (1 cameras, 1 outputs)",
		},
	}, {
		name: "the running camd's own file, by a symlink", file: link, env: ops,
		code: 0, err: []string{"http.listen: " + api + " is in use by the running camd: fine", link + ": ok (1 cameras, 1 outputs)"},
	}, {
		name: "another file than camd runs", file: other, env: ops,
		code: 1, err: []string{
			"http.listen: cannot listen on " + api + inUse + heldBy,
			"outputs[0].config.listen: cannot listen on " + web + inUse + heldBy,
			"), which runs " + path + ", not " + other + ": a reload re-reads that file)",
		},
	}, {
		name: "no admin token at hand", file: viewOnly,
		code: 1, err: []string{
			"http.listen: cannot listen on " + api + inUse + "(held by the camd at http://" + api + ", which could not be asked which file it runs: " +
				viewOnly + " configures auth and holds no admin token",
			"outputs[0].config.listen: cannot listen on " + web + inUse + "(perhaps held by the camd at http://" + api + ", which could not be asked where it listens",
			"set CAMD_TOKEN to an admin token, or pass -token-file FILE",
		},
	}, {
		name: "another file, asked with CAMD_TOKEN", file: viewOnly, env: map[string]string{"CAMD_TOKEN": scriptToken},
		code: 1, err: []string{"http.listen: cannot listen on " + api + inUse + heldBy, "), which runs " + path + ", not " + viewOnly},
	}, {
		name: "another file, asked with -token-file", file: viewOnly, flags: []string{"-token-file", tokenFile},
		code: 1, err: []string{"http.listen: cannot listen on " + api + inUse + heldBy, "), which runs " + path + ", not " + viewOnly},
	}, {
		name: "a port of another program", file: withBusy,
		code: 1, err: []string{"outputs[0].config.listen: cannot listen on " + busyAddr + inUse + "(another program uses it?)"},
	}, {
		name: "camd's API port held by another program", file: apiTaken, env: ops,
		code: 1, err: []string{"http.listen: cannot listen on " + squat + inUse + "(another program uses it?)"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := cli(t, tc.env, append([]string{"validate", "-config", tc.file}, tc.flags...)...)
			check(t, code, out, errs, tc.code, nil, tc.err, testSecrets)
		})
	}
	if told() {
		t.Errorf("camd validate sent a token, or a request, to a program that is not camd")
	}
}
