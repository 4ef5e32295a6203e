package sdk_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/camd/camd/sdk"
	"github.com/camd/camd/sdk/sdktest"
)

func TestHTTPConfigCheck(t *testing.T) {
	tests := []struct {
		name string
		cfg  sdk.HTTPConfig
		want []string // "key: message" prefixes
	}{
		{"defaults", sdk.DefaultHTTPConfig("127.0.0.1:8081"), nil},
		{"any port", sdk.HTTPConfig{Listen: "0.0.0.0:0", MaxViewersPerClient: 1}, nil},
		{"ipv6", sdk.HTTPConfig{Listen: "[::1]:8081", MaxViewersPerClient: 1}, nil},
		{"no port", sdk.HTTPConfig{Listen: "8081", MaxViewersPerClient: 1}, []string{"listen: want host:port"}},
		{"empty", sdk.HTTPConfig{MaxViewersPerClient: 1}, []string{"listen: want host:port"}},
		{"port out of range", sdk.HTTPConfig{Listen: "127.0.0.1:65536", MaxViewersPerClient: 1}, []string{"listen: want a port number"}},
		{"named port", sdk.HTTPConfig{Listen: "127.0.0.1:http", MaxViewersPerClient: 1}, []string{"listen: want a port number"}},
		{"no viewers", sdk.HTTPConfig{Listen: "127.0.0.1:1", MaxViewersPerClient: 0}, []string{"max_viewers_per_client: must be at least 1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := tt.cfg.Check()
			if len(errs) != len(tt.want) {
				t.Fatalf("errors %v, want %v", errs, tt.want)
			}
			for i, e := range errs {
				if !strings.HasPrefix(e.Error(), tt.want[i]) {
					t.Fatalf("error %q, want prefix %q", e, tt.want[i])
				}
			}
		})
	}
}

// The embedded config's keys sit beside the plugin's own and are decoded
// strictly with them.
func TestHTTPConfigInline(t *testing.T) {
	type config struct {
		sdk.HTTPConfig `yaml:",inline"`
		MaxViewers     int `yaml:"max_viewers"`
	}
	cfg := config{HTTPConfig: sdk.DefaultHTTPConfig("127.0.0.1:8081"), MaxViewers: 100}
	if err := sdk.DecodeConfig([]byte("listen: 0.0.0.0:9000\nmax_viewers_per_client: 3\n"), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "0.0.0.0:9000" || cfg.MaxViewersPerClient != 3 || cfg.MaxViewers != 100 {
		t.Fatalf("decoded %+v", cfg)
	}
	err := sdk.DecodeConfig([]byte("max_viewer_per_client: 3\n"), &cfg)
	if err == nil || !strings.Contains(err.Error(), "unknown key (known: listen, max_viewers, max_viewers_per_client, tls)") {
		t.Fatalf("typo: %v", err)
	}
}

// serve runs an sdk.HTTP on 127.0.0.1:0 whose /hold holds a viewer slot
// until its client goes away, and / answers "ok".
func serve(t *testing.T, h *sdk.HTTP) string {
	t.Helper()
	h.Config.Listen = "127.0.0.1:0"
	if h.Config.MaxViewersPerClient == 0 {
		h.Config.MaxViewersPerClient = sdk.DefaultMaxViewersPerClient
	}
	if err := h.Listen(sdk.WithSecurity(context.Background(), sdk.Security{})); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("GET /hold", func(w http.ResponseWriter, r *http.Request) {
		release, ok := h.Acquire(w, r)
		if !ok {
			return
		}
		defer release()
		w.WriteHeader(http.StatusOK)
		http.NewResponseController(w).Flush()
		<-r.Context().Done()
	})
	h.Serve(mux)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return h.URL("")
}

// clientFrom returns an HTTP client whose connections come from the
// loopback address from (127.0.0.x), so one test can be several clients.
func clientFrom(from string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

// A viewer slot per open /hold: per client at most max_viewers_per_client
// (then 429), in all at most MaxViewers (then 503); leaving frees a slot.
func TestHTTPAcquire(t *testing.T) {
	h := &sdk.HTTP{Config: sdk.HTTPConfig{MaxViewersPerClient: 2}, MaxViewers: 3}
	base := serve(t, h)
	type step struct {
		from     string
		close    int    // instead of opening: close the from client's close'th open stream (1-based)
		code     int    // want
		contains string // in a refusal's body
	}
	steps := []step{
		{from: "127.0.0.1", code: 200},
		{from: "127.0.0.1", code: 200},
		{from: "127.0.0.1", code: 429, contains: "too many viewers from 127.0.0.1: it has 2 open and max_viewers_per_client is 2"},
		{from: "127.0.0.2", code: 200},
		{from: "127.0.0.3", code: 503, contains: "too many viewers (max_viewers is 3)"},
		{from: "127.0.0.1", close: 1},
		{from: "127.0.0.3", code: 200},
		{from: "127.0.0.2", code: 503, contains: "max_viewers is 3"},
	}
	open := map[string][]*http.Response{}
	defer func() {
		for _, rs := range open {
			for _, r := range rs {
				r.Body.Close()
			}
		}
	}()
	for i, s := range steps {
		if s.close > 0 {
			open[s.from][s.close-1].Body.Close()
			waitFor(t, "a slot freed", func() bool { return h.Stats().Viewers == 2 })
			continue
		}
		resp, err := clientFrom(s.from).Get(base + "/hold")
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if resp.StatusCode != s.code {
			t.Fatalf("step %d (%s): status %d, want %d", i, s.from, resp.StatusCode, s.code)
		}
		if s.code == 200 {
			open[s.from] = append(open[s.from], resp)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), s.contains) {
			t.Fatalf("step %d: Retry-After %q, body %q, want %q", i, resp.Header.Get("Retry-After"), body, s.contains)
		}
	}
	st := h.Stats()
	if st.Viewers != 3 || st.ClientRefused != 1 || st.ViewersRefused != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// Connections over the per-client cap are answered 429 and closed, never
// served; other clients are served meanwhile, and the cap frees as
// connections close.
func TestHTTPConnectionsPerClient(t *testing.T) {
	h := &sdk.HTTP{Config: sdk.HTTPConfig{MaxViewersPerClient: 1}}
	base := serve(t, h)
	addr := strings.TrimPrefix(base, "http://")
	const perClient = 1 + 64 // max_viewers_per_client + room for pages and keep-alive
	f := sdktest.NewFlood(t, addr, "127.0.0.1", perClient)
	if f.Open() != perClient {
		t.Fatalf("%d of %d connections open", f.Open(), perClient)
	}
	waitFor(t, "connections counted", func() bool { return h.Stats().Connections == perClient })

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("one over the cap: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "too many connections from 127.0.0.1 (at most 65 at once)") {
		t.Fatalf("one over the cap: %d %v %q", resp.StatusCode, resp.Header, body)
	}

	// One more that sends nothing, as a flood does, is closed unanswered.
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	silent.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := silent.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a silent connection over the cap: read %d, %v; want it closed", n, err)
	}

	if resp, err := clientFrom("127.0.0.2").Get(base + "/"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("another client during the flood: %v %v", resp, err)
	}
	f.Close()
	waitFor(t, "the flood's connections to close", func() bool { return h.Stats().Connections == 0 })
	if resp, err := clientFrom("127.0.0.1").Get(base + "/"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("the flooding client after the flood: %v %v", resp, err)
	}
	if st := h.Stats(); st.ConnectionsRefused != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// Over all clients the server holds MaxViewers+1024 connections; more are
// answered 503 whoever they come from.
func TestHTTPConnectionsInAll(t *testing.T) {
	h := &sdk.HTTP{Config: sdk.HTTPConfig{MaxViewersPerClient: 5000}, MaxViewers: 6}
	base := serve(t, h)
	addr := strings.TrimPrefix(base, "http://")
	const all = 6 + 1024
	f := sdktest.NewFlood(t, addr, "127.0.0.1", all)
	if f.Open() != all {
		t.Fatalf("%d of %d connections open", f.Open(), all)
	}
	waitFor(t, "connections counted", func() bool { return h.Stats().Connections == all })
	resp, err := clientFrom("127.0.0.2").Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(body), "too many connections") {
		t.Fatalf("over the cap: %d %q", resp.StatusCode, body)
	}
	f.Close()
	waitFor(t, "the flood's connections to close", func() bool { return h.Stats().Connections == 0 })
	if resp, err := clientFrom("127.0.0.2").Get(base + "/"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("after the flood: %v %v", resp, err)
	}
}

// When a flood of connections ends, whether the server let them in or
// kept them out, it gives the memory back: the counter shows it.
// (plugins/mjpeg's TestFlood measures the memory itself.)
func TestHTTPReclaimAfterFlood(t *testing.T) {
	tests := []struct {
		name      string
		perClient int // max_viewers_per_client
		flood     int
		arrived   func(sdk.HTTPStats) bool // the server has seen the whole flood
	}{
		{"let in", 1000, 300, func(st sdk.HTTPStats) bool { return st.Connections == 300 }},              // under every cap
		{"kept out", 1, 65 + 1000, func(st sdk.HTTPStats) bool { return st.ConnectionsRefused == 1000 }}, // 1,000 over the per-client cap
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &sdk.HTTP{Config: sdk.HTTPConfig{MaxViewersPerClient: tt.perClient}}
			base := serve(t, h)
			f := sdktest.NewFlood(t, strings.TrimPrefix(base, "http://"), "127.0.0.1", tt.flood)
			waitFor(t, "the server to take the flood in", func() bool { return tt.arrived(h.Stats()) })
			f.Close()
			waitFor(t, "memory returned after the flood", func() bool { return h.Stats().MemoryReclaims >= 1 })
		})
	}
}

// A connection that never finishes its request headers is closed after the
// header timeout (5s).
func TestHTTPHeaderTimeout(t *testing.T) {
	t.Parallel()
	h := &sdk.HTTP{}
	base := serve(t, h)
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n") // and never the blank line
	start := time.Now()
	c.SetReadDeadline(start.Add(30 * time.Second))
	_, err = io.Copy(io.Discard, c)
	if err != nil {
		t.Fatalf("not closed: %v", err)
	}
	if d := time.Since(start); d < 4*time.Second {
		t.Fatalf("closed after %s, before the header timeout", d)
	}
}

// Shutdown ends a held request's context, so long-lived handlers return,
// and is safe before Listen, after a failed Listen, and twice.
func TestHTTPShutdown(t *testing.T) {
	var nilHTTP *sdk.HTTP
	if err := nilHTTP.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := new(sdk.HTTP).Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	h := &sdk.HTTP{}
	base := serve(t, h)
	resp, err := http.Get(base + "/hold")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	done := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, resp.Body); done <- err }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("held request still open after Shutdown")
	}
	if err := h.Shutdown(ctx); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	if _, err := http.Get(base + "/"); err == nil {
		t.Fatal("still serving after Shutdown")
	}
}

// A listen failure is a config error for the key listen, with the cause,
// which camd shows at the config line.
func TestHTTPListenError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tests := []struct {
		listen, want string
	}{
		{ln.Addr().String(), "listen: cannot listen on " + ln.Addr().String() + ": bind: address already in use"},
		{"192.0.2.1:8081", "listen: cannot listen on 192.0.2.1:8081: bind: cannot assign requested address"},
		{"8081", "listen: want host:port"},
	}
	for _, tt := range tests {
		h := &sdk.HTTP{Config: sdk.DefaultHTTPConfig(tt.listen)}
		err := h.Listen(sdk.WithSecurity(context.Background(), sdk.Security{}))
		if es := sdk.AsConfigErrors(err); len(es) != 1 || es[0].Key != "listen" || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("%s: %v (%T), want a config error %q", tt.listen, err, err, tt.want)
		}
		if err := h.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown after a failed Listen: %v", err)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func ExampleHTTP() {
	h := &sdk.HTTP{Config: sdk.DefaultHTTPConfig("127.0.0.1:0"), MaxViewers: 100}
	if err := h.Listen(sdk.WithSecurity(context.Background(), sdk.Security{})); err != nil {
		fmt.Println(err)
		return
	}
	h.Serve(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		release, ok := h.Acquire(w, r)
		if !ok {
			return // 429 or 503 sent
		}
		defer release()
		io.WriteString(w, "hello")
	}))
	defer h.Shutdown(context.Background())
	resp, err := http.Get(h.URL("/"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(b))
	// Output: 200 hello
}

// TestListenNeedsSecurity: a context that does not say who may connect
// (not Start's) is refused, rather than serving everyone.
func TestListenNeedsSecurity(t *testing.T) {
	h := &sdk.HTTP{Config: sdk.DefaultHTTPConfig("127.0.0.1:0")}
	err := h.Listen(context.Background())
	if err == nil {
		h.Shutdown(context.Background())
		t.Fatal("Listen served with no Security in its context")
	}
	if !strings.Contains(err.Error(), "Start") {
		t.Errorf("error %q does not say which context to pass", err)
	}
}
