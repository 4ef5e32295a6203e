package daemon

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/camd/camd/internal/pin"
	"github.com/camd/camd/internal/pluginhost"
	"github.com/camd/camd/sdk"
)

// proxyPrefix is where the daemon serves every output's HTTP: the
// output's own path /x is also at /outputs/<name>/x on camd's listener,
// so a user forwards, proxies or logs in to a single port.
const proxyPrefix = "/outputs/"

// outputProxy is a reverse proxy from /outputs/<name>/… to the plugin
// of output <name>. It flushes every write at once (MJPEG parts,
// long-polled stills), passes every method (WHEP's POST, DELETE, PATCH
// and OPTIONS), and rewrites Location headers so that WHEP sessions and
// redirects stay under /outputs/<name>/.
//
// Credentials (Authorization, ?token=) pass through to the plugin, whose
// sdk.HTTP checks them and the camera scope as on its own port. The proxy
// checks them first too, with the daemon's authenticator: a wrong
// password then counts against the client's own address, which the
// plugin, seeing every proxied request come from camd, could not do
// (ten bad guesses from anyone would lock everyone out of the plugin).
//
// For the same reason the proxy connects to a plugin listening on this
// machine's loopback from a loopback address of the client's own (one of
// 2^24 in 127.0.0.0/8, by a hash of the client's address): the plugin's
// per-client caps (max_viewers_per_client, connections) then apply to
// each client, not to all of camd's clients together. Connections are
// not reused, so each request leaves from its client's address.
type outputProxy struct {
	d  *Daemon
	rp *httputil.ReverseProxy
}

// proxyTarget is where one proxied request goes; Rewrite and the dialer
// read it from the request's context.
type proxyTarget struct {
	base   *url.URL // the plugin's scheme and host
	prefix string   // "/outputs/<name>"
	path   string   // the path at the plugin, unescaped and escaped
	raw    string
	source net.IP // the loopback address to connect from; nil: any
	pin    string // the certificate file the output serves with TLS; "": verify with the system's roots
}

type proxyTargetKey struct{}

func targetOf(ctx context.Context) *proxyTarget {
	t, _ := ctx.Value(proxyTargetKey{}).(*proxyTarget)
	return t
}

func newOutputProxy(d *Daemon) *outputProxy {
	p := &outputProxy{d: d}
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.failed,
		FlushInterval:  -1, // streams: every part reaches the viewer at once
		BufferPool:     &proxyBuffers{},
		Transport: &http.Transport{
			DialContext:         dialPlugin,
			DialTLSContext:      dialPluginTLS,
			DisableKeepAlives:   true, // each request connects from its client's address
			TLSHandshakeTimeout: 10 * time.Second,
			// A plugin that takes this long to begin an answer is hung:
			// the client gets 502 rather than a request that never ends.
			ResponseHeaderTimeout:  30 * time.Second,
			MaxResponseHeaderBytes: 64 << 10,
			DisableCompression:     true, // pass bytes through; never decode and re-encode
		},
	}
	return p
}

// proxyBuffers are the proxy's copy buffers, one per request while it
// copies: 64 KiB holds a VGA camera frame, so a frame the plugin flushed
// at once is mostly read, written and flushed in one go (net/http's
// default, 32 KiB, splits it), and 500 streams hold 32 MiB.
type proxyBuffers struct{ pool sync.Pool }

const proxyBufferSize = 64 << 10

func (b *proxyBuffers) Get() []byte {
	if p, ok := b.pool.Get().(*[]byte); ok {
		return *p
	}
	return make([]byte, proxyBufferSize)
}

func (b *proxyBuffers) Put(p []byte) { b.pool.Put(&p) }

// ServeHTTP proxies /outputs/{name}/{rest...}.
func (p *outputProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	out := p.d.output(name)
	if out == nil {
		http.Error(w, fmt.Sprintf("no output %q", name), http.StatusNotFound)
		return
	}
	state, urls := out.URLs()
	if state != pluginhost.StateRunning || len(urls) == 0 {
		w.Header().Set("Retry-After", "1")
		http.Error(w, fmt.Sprintf("output %q is %s; retry in a moment", name, state), http.StatusServiceUnavailable)
		return
	}
	base, err := url.Parse(urls[0])
	if err != nil || base.Host == "" {
		http.Error(w, fmt.Sprintf("output %q reported no usable URL (%q)", name, urls[0]), http.StatusBadGateway)
		return
	}
	prefix := strings.TrimSuffix(proxyPrefix, "/") + "/" + name
	t := &proxyTarget{
		base: &url.URL{Scheme: base.Scheme, Host: base.Host}, prefix: prefix,
		path: strings.TrimPrefix(r.URL.Path, prefix), source: viewerSource(r.RemoteAddr),
		pin: certOf(out.Spec()),
	}
	if esc := r.URL.EscapedPath(); strings.HasPrefix(esc, prefix+"/") {
		t.raw = strings.TrimPrefix(esc, prefix)
	}
	if !p.authorized(w, r, out.Spec().Security.AuthRequired, t.path) {
		return
	}
	p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), proxyTargetKey{}, t)))
}

// certOf returns the certificate file an output serves HTTPS with: its
// config block's own tls.cert (a path the plugin, which runs in camd's
// directory, reads as written), else the one of config.yaml's tls block.
func certOf(spec pluginhost.Spec) string {
	var own struct {
		TLS *struct {
			Cert string `yaml:"cert"`
		} `yaml:"tls"`
	}
	if yaml.Unmarshal(spec.ConfigYAML, &own) == nil && own.TLS != nil && own.TLS.Cert != "" {
		return own.TLS.Cert
	}
	return spec.Security.TLSCert
}

// output returns the running output called name, or nil.
func (d *Daemon) output(name string) *pluginhost.Output {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, o := range d.outputs {
		if o.spec.Name == name {
			return o.out
		}
	}
	return nil
}

// authorized checks r's credential when the output requires one, with
// the daemon's authenticator, and answers w as the plugin would when it
// is missing, wrong, or not for the camera in path. CORS preflights carry
// no credentials and pass: the plugin's own guard answers them, and no
// handler of the plugin sees them.
func (p *outputProxy) authorized(w http.ResponseWriter, r *http.Request, required bool, path string) bool {
	auth := p.d.guard.Load().auth
	if !required || !auth.Enabled() || sdk.IsPreflight(r) {
		return true
	}
	who, code := auth.Authenticate(r)
	switch {
	case code == http.StatusTooManyRequests:
		w.Header().Set("Retry-After", "60")
		http.Error(w, "too many failed logins from your address; wait a minute", code)
		return false
	case who == nil:
		// Page and stream loads get a login prompt; scripts (WHEP) do not.
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			w.Header().Set("WWW-Authenticate", `Basic realm="camd", charset="UTF-8"`)
		} else {
			w.Header().Set("WWW-Authenticate", `Bearer realm="camd"`)
		}
		http.Error(w, "authentication required: log in, or add ?token=<token> (see camd's README: Exposing camd on your network)", http.StatusUnauthorized)
		return false
	}
	if cam := sdk.CameraOfPath(path); cam != "" && !who.CanView(cam) {
		http.Error(w, fmt.Sprintf("%s may not view camera %q", who.Name, cam), http.StatusForbidden)
		return false
	}
	return true
}

func (p *outputProxy) rewrite(pr *httputil.ProxyRequest) {
	t := targetOf(pr.In.Context())
	pr.Out.URL.Scheme, pr.Out.URL.Host = t.base.Scheme, t.base.Host
	pr.Out.URL.Path, pr.Out.URL.RawPath = t.path, t.raw
	pr.Out.Host = "" // the plugin's own host:port
	pr.SetXForwarded()
}

// modifyResponse keeps the plugin's Location headers (a WHEP session, a
// redirect) under the output's prefix.
func (p *outputProxy) modifyResponse(resp *http.Response) error {
	if loc := resp.Header.Get("Location"); loc != "" {
		t := targetOf(resp.Request.Context())
		resp.Header.Set("Location", rewriteLocation(loc, t.prefix, t.base.Host))
	}
	return nil
}

// rewriteLocation maps a Location the plugin sent to the address a
// client of the proxy uses: a path on the plugin ("/cameras/a/whep/1", or
// the same as an absolute URL of the plugin's host) moves under prefix;
// relative references already stay there; other sites are left alone.
func rewriteLocation(loc, prefix, pluginHost string) string {
	u, err := url.Parse(loc)
	if err != nil {
		return loc
	}
	if u.Scheme != "" || u.Host != "" {
		if !strings.EqualFold(u.Host, pluginHost) {
			return loc
		}
		u.Scheme, u.Host, u.User = "", "", nil
	}
	if !strings.HasPrefix(u.Path, "/") {
		return u.String()
	}
	u.Path, u.RawPath = prefix+u.Path, prefix+u.EscapedPath()
	return u.String()
}

// failed answers a request the plugin did not: 502, unless the client
// left (then there is no one to answer).
func (p *outputProxy) failed(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return
	}
	p.d.log.Debug("proxy", "path", r.URL.Path, "err", err)
	w.Header().Set("Retry-After", "1")
	http.Error(w, fmt.Sprintf("the output did not answer: %v", err), http.StatusBadGateway)
}

// viewerSource returns the loopback address the proxy connects to a
// plugin from on behalf of the client at remoteAddr: 127.a.b.c, from a
// hash of the client's IP address (of its /64 for IPv6, which the
// plugins' per-client limits count as one client), avoiding .0 and .255
// in each byte that could matter. Two clients share one only by chance
// (one in ~16 million).
func viewerSource(remoteAddr string) net.IP {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	if a, err := netip.ParseAddr(host); err == nil && a.Unmap().Is6() {
		p, _ := a.WithZone("").Prefix(64)
		host = p.String()
	}
	h := fnv.New32a()
	h.Write([]byte(host))
	s := h.Sum32()
	return net.IPv4(127, byte(1+s%254), byte(s>>8), byte(1+(s>>16)%254)).To4()
}

// dialPlugin connects to a plugin, from the request's loopback source
// address when the plugin listens on loopback or on every address, and
// from any address otherwise (or where the system allows no other
// loopback address than 127.0.0.1).
func dialPlugin(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	t := targetOf(ctx)
	host, port, err := net.SplitHostPort(addr)
	if err != nil || t == nil || t.source == nil {
		return d.DialContext(ctx, network, addr)
	}
	ip := net.ParseIP(host)
	switch {
	case ip == nil:
		return d.DialContext(ctx, network, addr)
	case ip.IsUnspecified():
		addr = net.JoinHostPort("127.0.0.1", port)
	case ip.To4() == nil || !ip.IsLoopback():
		return d.DialContext(ctx, network, addr)
	}
	bound := d
	bound.LocalAddr = &net.TCPAddr{IP: t.source}
	c, err := bound.DialContext(ctx, "tcp4", addr)
	if errors.Is(err, syscall.EADDRNOTAVAIL) {
		return d.DialContext(ctx, "tcp4", addr)
	}
	return c, err
}

// dialPluginTLS connects to a plugin serving TLS. The plugin is a child
// of camd on this machine, often on an IP address its certificate does
// not name: its certificate is accepted when it is the one in the file
// the output was configured with, and otherwise only when it verifies
// against the system's roots (and that file's certificates) for the host.
func dialPluginTLS(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := dialPlugin(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	host, _, _ := net.SplitHostPort(addr)
	var pin string
	if t := targetOf(ctx); t != nil {
		pin = t.pin
	}
	tc := tls.Client(c, &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         host,
		InsecureSkipVerify: true, // verified by VerifyConnection, below
		VerifyConnection:   func(cs tls.ConnectionState) error { return verifyPlugin(cs, host, pin) },
	})
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return tc, nil
}

// verifyPlugin checks the certificate a plugin presented (see
// dialPluginTLS). The file is read at each connection: a renewed
// certificate counts at once.
func verifyPlugin(cs tls.ConnectionState, host, pinFile string) error {
	var pinned []*x509.Certificate
	if pinFile != "" {
		certs, err := pin.Load(pinFile)
		if err != nil {
			return fmt.Errorf("reading the output's certificate: %w", err)
		}
		pinned = certs
	}
	return pin.Verify(cs, host, pinned)
}
