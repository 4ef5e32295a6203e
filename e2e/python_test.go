package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"image"
	"image/jpeg"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/camd/camd/internal/testcert"
	pb "github.com/camd/camd/proto/outputv1"
)

// The Python example plugin (examples/python/latest.py) is a plugin in
// another language held to the same contract as the Go ones: camd starts it
// through command:, it passes go-plugin's handshake, takes frames and acks
// them, and serves the newest JPEG of each camera.

// pythonPlugin returns the example's path, after checking that Debian's
// python3 has the packages it imports.
func pythonPlugin(t *testing.T) string {
	t.Helper()
	path, err := filepath.Abs("../examples/python/latest.py")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("/usr/bin/python3", "-c", "import grpc, google.protobuf, yaml, bcrypt, cryptography").CombinedOutput()
	if err != nil {
		t.Fatalf("Debian's python3 lacks the plugin's packages (bash scripts/setup.sh test installs them): %v\n%s", err, out)
	}
	return path
}

// The go-plugin side of the contract, without camd: run by hand the plugin
// refuses; with camd's cookie it prints the handshake line for a fresh
// unix socket in PLUGIN_UNIX_SOCKET_DIR, answers the health check for
// "plugin", and exits when asked to shut down, removing its socket.
func TestPythonPluginHandshake(t *testing.T) {
	plugin := pythonPlugin(t)
	if out, err := exec.Command(plugin).CombinedOutput(); err == nil || !strings.Contains(string(out), "camd starts it") {
		t.Errorf("run by hand: %v, %q; want a refusal", err, out)
	}

	dir := t.TempDir()
	cmd := exec.Command(plugin)
	cmd.Env = append(os.Environ(), "CAMD_PLUGIN=b2c0a5b4-camd-output", "PLUGIN_UNIX_SOCKET_DIR="+dir, "PLUGIN_PROTOCOL_VERSIONS=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })

	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`^1\|1\|unix\|(` + regexp.QuoteMeta(dir) + `/plugin[^|/]+)\|grpc\|\n$`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("handshake line %q; want 1|1|unix|%s/plugin...|grpc|", line, dir)
	}
	conn, err := grpc.NewClient("unix://"+m[1], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	health, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "plugin"})
	if err != nil || health.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health of \"plugin\": %v, %v; want SERVING", health, err)
	}
	// go-plugin's controller service; its Empty is wire-compatible with
	// protobuf's.
	if err := conn.Invoke(ctx, "/plugin.GRPCController/Shutdown", &emptypb.Empty{}, &emptypb.Empty{}); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("plugin exited with %v after Shutdown", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("plugin still running 10 s after Shutdown")
	}
	if _, err := os.Stat(m[1]); !os.IsNotExist(err) {
		t.Errorf("socket %s left behind: %v", m[1], err)
	}
}

// It runs, over a plain unix socket and with AutoMTLS: every camera's
// newest frame is served and keeps changing (so the plugin acks: camd sends
// a camera's next frame only after the ack), its counters appear in
// /api/status, its log lines arrive as structured logs, a camera added by
// a reload is served after a restart (it answers SetCameras UNIMPLEMENTED),
// and camd stops it gracefully.
func TestPythonPluginServesFrames(t *testing.T) {
	plugin := pythonPlugin(t)
	for _, mtls := range []bool{false, true} {
		t.Run(fmt.Sprintf("plugin_auto_mtls=%v", mtls), func(t *testing.T) {
			cameras := `cameras:
  - {name: a, source: {type: sim, size: 160x120, fps: 10}}
  - {name: b, source: {type: sim, size: 320x240, fps: 10}}
`
			outputs := fmt.Sprintf(`outputs:
  - name: py
    command: %s
    config: {listen: "127.0.0.1:0"}
`, plugin)
			head := fmt.Sprintf("plugin_auto_mtls: %v\n", mtls)
			c := startCamd(t, head+cameras+outputs)
			s := c.waitOutputs(nil)
			sizes := map[string]image.Point{"a": {160, 120}, "b": {320, 240}}
			for cam, size := range sizes {
				url := outputURL(s, "py", "/cameras/"+cam+"/latest.jpg")
				if url == "" {
					t.Fatalf("no URL for camera %s in %+v", cam, s.Outputs)
				}
				first := waitJPEG(t, http.DefaultClient, url, size, 0)
				next := waitJPEG(t, http.DefaultClient, url, size, first.seq)
				if bytes.Equal(next.body, first.body) {
					t.Errorf("camera %s: frames %d and %d are the same picture", cam, first.seq, next.seq)
				}
			}

			st := pyStatus(t, c)
			if st.Plugin != "latest.py" || st.Version != "1.0.0" || st.State != "running" {
				t.Errorf("status shows plugin %q version %q state %q; want latest.py 1.0.0 running", st.Plugin, st.Version, st.State)
			}
			for cam := range sizes {
				if pc := st.PluginStatus.Cameras[cam]; pc.Frames < 2 || pc.Served < 2 {
					t.Errorf("plugin counters for %s: %+v; want at least 2 frames taken and 2 served", cam, pc)
				}
			}

			// The same counters reach camd's /metrics, labelled with the output.
			metrics := pyDo(t, c.client, "GET", c.api+"/metrics", func(*http.Request) {})
			if !regexp.MustCompile(`(?m)^camd_plugin_latest_frames_total\{camera="a",output="py"\} [1-9]`).Match(metrics.body) {
				t.Errorf("/metrics lacks the plugin's frame counter for camera a:\n%s", metrics.body)
			}

			// Its hclog JSON lines are parsed, not passed on as raw text.
			logs := c.logs.String()
			if !strings.Contains(logs, "msg=serving output=py") || strings.Contains(logs, "@message") {
				t.Errorf("the plugin's log lines did not arrive as structured logs:\n%s", logs)
			}

			// A new camera changes the output's camera list: the plugin
			// cannot change it in place, so camd restarts it.
			c.writeConfig(head + cameras + "  - {name: c, source: {type: sim, size: 160x120, fps: 10}}\n" + outputs)
			if err := c.cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			after := c.waitReload(t, func(s status) bool {
				return outputState(s, "py") == "running" && pids(s)["py"] != st.PID &&
					outputURL(s, "py", "/cameras/c/latest.jpg") != ""
			})
			waitJPEG(t, http.DefaultClient, outputURL(after, "py", "/cameras/c/latest.jpg"), image.Point{160, 120}, 0)

			// camd's stop asks the plugin to shut down (GRPCController),
			// instead of killing it after 2 s.
			c.stop()
			logs = c.logs.String()
			if !strings.Contains(logs, "msg=stopped output=py") || strings.Contains(logs, "plugin failed to exit gracefully") {
				t.Errorf("the plugin did not stop gracefully:\n%s", logs)
			}
		})
	}
}

// Its config errors come back per key, so camd reports them at file:line,
// from camd validate and camd run alike; the listen address it reports
// lets camd refuse a port that is taken before starting anything.
func TestPythonPluginConfigErrors(t *testing.T) {
	plugin := pythonPlugin(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	for _, tc := range []struct {
		name string
		body string // after the cameras
		want []string
	}{{
		name: "its own keys",
		body: `outputs:
  - name: py
    command: ` + plugin + `
    config:
      listen: nonsense
      placeholders: maybe
      colour: red
`,
		want: []string{
			`c.yaml:8: outputs[0].config.listen: want host:port, e.g. 127.0.0.1:8090 (got "nonsense")`,
			`c.yaml:9: outputs[0].config.placeholders: want serve or refuse (got "maybe")`,
			`c.yaml:10: outputs[0].config.colour: unknown key`,
		},
	}, {
		name: "port in use by another program",
		body: `outputs:
  - name: py
    command: ` + plugin + `
    config:
      listen: ` + busy.Addr().String() + `
`,
		want: []string{`c.yaml:8: outputs[0].config.listen: cannot listen on ` + busy.Addr().String() + `: bind: address already in use`},
	}, {
		name: "port of another output",
		body: `outputs:
  - name: web
    plugin: mjpeg
    config: {listen: 127.0.0.1:18491}
  - name: py
    command: ` + plugin + `
    config:
      listen: 127.0.0.1:18491
`,
		want: []string{`c.yaml:11: outputs[1].config.listen: 127.0.0.1:18491 is already taken by output "web"`},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			cfg := "plugin_dir: " + binDir + "\ncameras:\n  - {name: sim, source: {type: sim}}\n" + tc.body
			if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, cmd := range []string{"validate", "run"} {
				out, code, _ := camdCmd(t, cmd, path, 30*time.Second)
				if code == 0 {
					t.Fatalf("camd %s accepted it:\n%s", cmd, out)
				}
				for _, w := range tc.want {
					if !strings.Contains(out, w) {
						t.Errorf("camd %s output lacks %q:\n%s", cmd, w, out)
					}
				}
			}
		})
	}
}

// Who may look is camd's to say (auth, tls and cors in config.yaml) and
// the plugin's to enforce, over HTTP and HTTPS: users with their bcrypt
// hashed passwords, tokens by their SHA-256 digest with their camera
// scope, CORS only for the allowed origin.
func TestPythonPluginEnforcesSecurity(t *testing.T) {
	plugin := pythonPlugin(t)
	const (
		admin    = "py-admin-token-0123456789abcdef"
		viewA    = "py-view-token-a-0123456789abcdef"
		password = "py-password-123"
		origin   = "http://dashboard.example"
	)
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	for _, scheme := range []string{"http", "https"} {
		t.Run(scheme, func(t *testing.T) {
			client, tlsBlock := http.DefaultClient, ""
			if scheme == "https" {
				client, tlsBlock = selfSigned(t)
			}
			c := startCamd(t, fmt.Sprintf(`%s
auth:
  users:
    - {name: alice, password_hash: %q}
  tokens:
    - {name: ops, token: %s, scope: admin}
    - {name: ha, token: %s, cameras: [a]}
cors:
  allow_origins: [%q]
cameras:
  - {name: a, source: {type: sim, size: 160x120, fps: 10}}
  - {name: b, source: {type: sim, size: 160x120, fps: 10}}
outputs:
  - name: py
    command: %s
    config: {listen: "127.0.0.1:0"}
`, tlsBlock, hash, admin, viewA, origin, plugin))
			c.client, c.token = client, admin
			s := c.waitOutputs(nil)
			urlA := outputURL(s, "py", "/cameras/a/latest.jpg")
			urlB := outputURL(s, "py", "/cameras/b/latest.jpg")
			if !strings.HasPrefix(urlA, scheme+"://") {
				t.Fatalf("plugin URL %q is not %s", urlA, scheme)
			}
			bearer := func(tok string) func(*http.Request) {
				return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
			}
			basic := func(user, pw string) func(*http.Request) {
				return func(r *http.Request) { r.SetBasicAuth(user, pw) }
			}
			// Until both cameras have a frame, an allowed request gets 503.
			for _, u := range []string{urlA, urlB} {
				waitFor(t, 20*time.Second, func() bool { return pyGet(t, client, u, bearer(admin)).code == 200 })
			}

			denied := 0
			for _, tc := range []struct {
				name string
				url  string
				cred func(*http.Request)
				want int
			}{
				{"no credential", urlA, func(*http.Request) {}, 401},
				{"user", urlB, basic("alice", password), 200},
				{"wrong password", urlA, basic("alice", "nope"), 401},
				{"unknown user", urlA, basic("bob", password), 401},
				{"view token, its camera", urlA, bearer(viewA), 200},
				{"view token, another camera", urlB, bearer(viewA), 403},
				{"view token in ?token=", urlA + "?token=" + viewA, func(*http.Request) {}, 200},
				{"admin token", urlB, bearer(admin), 200},
				{"unknown token", urlA, bearer("py-nobody-0123456789abcdef"), 401},
			} {
				r := pyGet(t, client, tc.url, tc.cred)
				if r.code != tc.want {
					t.Errorf("%s: got %d, want %d (%s)", tc.name, r.code, tc.want, r.body)
				}
				switch {
				case r.code == 200:
					if _, err := jpeg.Decode(bytes.NewReader(r.body)); err != nil {
						t.Errorf("%s: not a JPEG: %v", tc.name, err)
					}
				case r.code == 401 && r.header.Get("WWW-Authenticate") == "":
					t.Errorf("%s: 401 without a WWW-Authenticate challenge", tc.name)
				}
				if r.code != 200 {
					denied++
				}
			}

			// CORS: the allowed origin's pages may read, others' may not.
			withOrigin := func(o string) func(*http.Request) {
				return func(r *http.Request) { r.Header.Set("Origin", o); bearer(viewA)(r) }
			}
			if got := pyGet(t, client, urlA, withOrigin(origin)).header.Get("Access-Control-Allow-Origin"); got != origin {
				t.Errorf("allowed origin got Access-Control-Allow-Origin %q", got)
			}
			if got := pyGet(t, client, urlA, withOrigin("http://evil.example")).header.Get("Access-Control-Allow-Origin"); got != "" {
				t.Errorf("another origin got Access-Control-Allow-Origin %q", got)
			}
			// A preflight carries no credential and is answered anyway, with
			// the methods and headers docs/plugins.md asks for.
			preflight := func(o string) func(*http.Request) {
				return func(r *http.Request) {
					r.Header.Set("Origin", o)
					r.Header.Set("Access-Control-Request-Method", "GET")
					r.Header.Set("Access-Control-Request-Headers", "authorization")
				}
			}
			pre := pyDo(t, client, "OPTIONS", urlA, preflight(origin))
			methods := pre.header.Get("Access-Control-Allow-Methods")
			if pre.code != 204 || pre.header.Get("Access-Control-Allow-Headers") != "Authorization, Content-Type" ||
				!strings.Contains(methods, "GET") || !strings.Contains(methods, "HEAD") ||
				pre.header.Get("Access-Control-Allow-Origin") != origin {
				t.Errorf("preflight: %d %v", pre.code, pre.header)
			}
			if pre := pyDo(t, client, "OPTIONS", urlA, preflight("http://evil.example")); pre.header.Get("Access-Control-Allow-Origin") != "" ||
				pre.header.Get("Access-Control-Allow-Headers") != "" {
				t.Errorf("preflight from another origin: %d %v", pre.code, pre.header)
			}

			// HEAD is GET without the body, credentials and all.
			if r := pyDo(t, client, "HEAD", urlA, func(*http.Request) {}); r.code != 401 || r.header.Get("WWW-Authenticate") == "" || len(r.body) != 0 {
				t.Errorf("HEAD without a credential: %d %v, %d bytes; want 401 with a challenge, no body", r.code, r.header, len(r.body))
			}
			denied++
			if r := pyDo(t, client, "HEAD", urlB, bearer(viewA)); r.code != 403 {
				t.Errorf("HEAD with a view token for another camera: %d; want 403", r.code)
			}
			denied++
			if r := pyDo(t, client, "HEAD", urlA, bearer(viewA)); r.code != 200 || r.header.Get("Content-Type") != "image/jpeg" ||
				r.header.Get("X-Camera-State") != "live" || r.header.Get("X-Frame-Seq") == "" || len(r.body) != 0 {
				t.Errorf("HEAD: %d %v, %d bytes; want 200 with a JPEG's headers, no body", r.code, r.header, len(r.body))
			}

			if got := pyStatus(t, c).PluginStatus.Denied; got != denied {
				t.Errorf("plugin counted %d denied requests, want %d", got, denied)
			}
		})
	}
}

// A camera that is offline gets camd's placeholder picture, which is not
// the camera's: by default the still endpoint refuses it (503, Retry-After,
// X-Camera-State: offline), and with placeholders: serve it answers it
// marked X-Camera-State: offline; a live camera's stills say live. HEAD
// answers the same without the body.
func TestPythonPluginPlaceholders(t *testing.T) {
	plugin := pythonPlugin(t)
	c := startCamd(t, fmt.Sprintf(`
cameras:
  - {name: a, source: {type: sim, size: 160x120, fps: 10}}
  - name: gone
    source: {type: esp32, url: "http://%s"}
outputs:
  - name: py
    command: %s
    config: {listen: "127.0.0.1:0"}
  - name: pyserve
    command: %s
    config: {listen: "127.0.0.1:0", placeholders: serve}
`, freeAddr(t), plugin, plugin))
	s := c.waitOutputs(nil)
	none := func(*http.Request) {}

	waitJPEG(t, http.DefaultClient, outputURL(s, "py", "/cameras/a/latest.jpg"), image.Point{160, 120}, 0)
	if r := pyGet(t, http.DefaultClient, outputURL(s, "py", "/cameras/a/latest.jpg"), none); r.code != 200 || r.header.Get("X-Camera-State") != "live" {
		t.Errorf("live camera: %d, X-Camera-State %q; want 200, live", r.code, r.header.Get("X-Camera-State"))
	}

	// Refused by default, once the first placeholder has arrived (before
	// it, there is no frame at all: 503 too).
	refuse := outputURL(s, "py", "/cameras/gone/latest.jpg")
	var r pyResponse
	waitFor(t, 20*time.Second, func() bool {
		r = pyGet(t, http.DefaultClient, refuse, none)
		return r.header.Get("X-Camera-State") != ""
	})
	if r.code != 503 || r.header.Get("Retry-After") != "1" || r.header.Get("X-Camera-State") != "offline" {
		t.Errorf("offline camera: %d %v %q; want 503 with Retry-After: 1 and X-Camera-State: offline", r.code, r.header, r.body)
	}
	if _, err := jpeg.Decode(bytes.NewReader(r.body)); err == nil {
		t.Errorf("offline camera: the refusal carries a JPEG")
	}
	if h := pyDo(t, http.DefaultClient, "HEAD", refuse, none); h.code != 503 || h.header.Get("X-Camera-State") != "offline" || len(h.body) != 0 {
		t.Errorf("HEAD, offline camera: %d %v, %d bytes; want 503 offline without a body", h.code, h.header, len(h.body))
	}

	// Served, and marked, with placeholders: serve.
	serve := outputURL(s, "pyserve", "/cameras/gone/latest.jpg")
	waitFor(t, 20*time.Second, func() bool {
		r = pyGet(t, http.DefaultClient, serve, none)
		return r.code == 200
	})
	if r.header.Get("X-Camera-State") != "offline" {
		t.Errorf("placeholders: serve answered the placeholder with X-Camera-State %q; want offline", r.header.Get("X-Camera-State"))
	}
	if _, err := jpeg.Decode(bytes.NewReader(r.body)); err != nil {
		t.Errorf("placeholders: serve: not a JPEG: %v", err)
	}
	h := pyDo(t, http.DefaultClient, "HEAD", serve, none)
	if h.code != 200 || h.header.Get("X-Camera-State") != "offline" || h.header.Get("Content-Type") != "image/jpeg" || len(h.body) != 0 {
		t.Errorf("HEAD, placeholders: serve: %d %v, %d bytes; want 200 offline without a body", h.code, h.header, len(h.body))
	}
	if n, _ := strconv.Atoi(h.header.Get("Content-Length")); n <= 0 {
		t.Errorf("HEAD, placeholders: serve: Content-Length %q; want the JPEG's length", h.header.Get("Content-Length"))
	}
}

// The committed Python stubs are generated from the current output.proto:
// a new RPC or field in the contract must reach them too.
func TestPythonStubsMatchProto(t *testing.T) {
	pythonPlugin(t)
	cmd := exec.Command("/usr/bin/python3", "-c", "import sys, output_pb2; sys.stdout.buffer.write(output_pb2.DESCRIPTOR.serialized_pb)")
	cmd.Dir = "../examples/python"
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	var got descriptorpb.FileDescriptorProto
	if err := proto.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	want := protodesc.ToFileDescriptorProto(pb.File_output_proto)
	// json_name is derived from the field name; protoc leaves it out of
	// the descriptor it embeds in Python.
	var dropJSONNames func([]*descriptorpb.DescriptorProto)
	dropJSONNames = func(ms []*descriptorpb.DescriptorProto) {
		for _, m := range ms {
			for _, f := range m.Field {
				f.JsonName = nil
			}
			dropJSONNames(m.NestedType)
		}
	}
	dropJSONNames(want.MessageType)
	if !proto.Equal(&got, want) {
		t.Fatal("examples/python/output_pb2.py is older than proto/outputv1/output.proto: run make -C examples/python generate")
	}
}

// pyOutput is the Python output's entry in /api/status.
type pyOutput struct {
	Name         string `json:"name"`
	Plugin       string `json:"plugin"`
	Version      string `json:"version"`
	State        string `json:"state"`
	PID          int    `json:"pid"`
	PluginStatus struct {
		Denied  int `json:"denied"`
		Cameras map[string]struct {
			Frames       int `json:"frames"`
			Placeholders int `json:"placeholders"`
			Served       int `json:"served"`
		} `json:"cameras"`
	} `json:"plugin_status"`
}

func pyStatus(t *testing.T, c *camd) pyOutput {
	t.Helper()
	var st struct {
		Outputs []pyOutput `json:"outputs"`
	}
	c.apiJSON("/api/status", &st)
	for _, o := range st.Outputs {
		if o.Name == "py" {
			return o
		}
	}
	t.Fatalf("no output py in /api/status: %+v", st)
	return pyOutput{}
}

type pyResponse struct {
	code   int
	header http.Header
	body   []byte
}

func pyGet(t *testing.T, client *http.Client, url string, cred func(*http.Request)) pyResponse {
	t.Helper()
	return pyDo(t, client, "GET", url, cred)
}

func pyDo(t *testing.T, client *http.Client, method, url string, cred func(*http.Request)) pyResponse {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	cred(req)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return pyResponse{resp.StatusCode, resp.Header, body}
}

type latestFrame struct {
	seq  uint64
	body []byte
}

// waitJPEG polls url until it serves a frame newer than after, and checks
// that it is a JPEG of the camera's size.
func waitJPEG(t *testing.T, client *http.Client, url string, size image.Point, after uint64) latestFrame {
	t.Helper()
	var f latestFrame
	waitFor(t, 20*time.Second, func() bool {
		r := pyGet(t, client, url, func(*http.Request) {})
		if r.code != 200 {
			return false
		}
		f.seq, _ = strconv.ParseUint(r.header.Get("X-Frame-Seq"), 10, 64)
		f.body = r.body
		return f.seq > after
	})
	img, err := jpeg.Decode(bytes.NewReader(f.body))
	if err != nil {
		t.Fatalf("%s: frame %d is not a JPEG: %v", url, f.seq, err)
	}
	if got := img.Bounds().Size(); got != size {
		t.Fatalf("%s: frame is %v, want %v", url, got, size)
	}
	return f
}

func waitFor(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still not so after %v", timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// selfSigned writes a certificate for 127.0.0.1 and returns camd's tls
// block naming it and a client that trusts it.
func selfSigned(t *testing.T) (*http.Client, string) {
	t.Helper()
	c := testcert.New(t, "127.0.0.1")
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	c.Write(t, certFile, keyFile)
	return c.Client(), fmt.Sprintf("tls: {cert: %s, key: %s}", certFile, keyFile)
}
