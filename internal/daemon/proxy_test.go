package daemon

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/camd/camd/internal/pluginhost"
	"github.com/camd/camd/internal/testcert"
)

func TestProxyRewriteLocation(t *testing.T) {
	const plugin = "127.0.0.1:8082"
	for _, tc := range []struct{ in, want string }{
		{"/cameras/a/whep/0f3a", "/outputs/rtc/cameras/a/whep/0f3a"},
		{"/cameras/a/", "/outputs/rtc/cameras/a/"},
		{"/cameras/a/x?y=1", "/outputs/rtc/cameras/a/x?y=1"},
		{"http://127.0.0.1:8082/cameras/a/whep/1", "/outputs/rtc/cameras/a/whep/1"},
		{"https://127.0.0.1:8082/", "/outputs/rtc/"},
		{"whep/1", "whep/1"}, // relative: already under the prefix
		{"../b/", "../b/"},   // relative
		{"http://example.com/x", "http://example.com/x"}, // elsewhere
		{"//example.com/x", "//example.com/x"},
		{"/cameras/a%2Fb/", "/outputs/rtc/cameras/a%2Fb/"},
	} {
		if got := rewriteLocation(tc.in, "/outputs/rtc", plugin); got != tc.want {
			t.Errorf("rewriteLocation(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestProxyViewerSource(t *testing.T) {
	seen := map[string]string{}
	for _, remote := range []string{"127.0.0.1:5000", "192.168.1.20:1", "192.168.1.21:1", "[2001:db8::1]:443", "10.0.0.1:2", "bogus"} {
		ip := viewerSource(remote)
		if ip.To4() == nil || !ip.IsLoopback() {
			t.Fatalf("viewerSource(%q) = %v, not an IPv4 loopback address", remote, ip)
		}
		for _, b := range ip[1:] {
			if b == 0 && ip[3] == 0 || ip[3] == 255 || ip[1] == 0 {
				t.Errorf("viewerSource(%q) = %v: a network or broadcast-like address", remote, ip)
			}
		}
		if other, dup := seen[ip.String()]; dup {
			t.Errorf("%q and %q share %v", remote, other, ip)
		}
		seen[ip.String()] = remote
	}
	// One client, one address: the port does not matter, nor, for IPv6,
	// the address within its /64 (as the plugins' per-client limits count).
	for _, pair := range [][2]string{
		{"192.168.1.20:1", "192.168.1.20:60000"},
		{"[2001:db8:1:2::1]:1", "[2001:db8:1:2:ffff::9]:2"},
	} {
		if a, b := viewerSource(pair[0]), viewerSource(pair[1]); !a.Equal(b) {
			t.Errorf("one client (%s, %s), two addresses: %v, %v", pair[0], pair[1], a, b)
		}
	}
	if a, b := viewerSource("[2001:db8:1:2::1]:1"), viewerSource("[2001:db8:1:3::1]:1"); a.Equal(b) {
		t.Errorf("two /64s share %v", a)
	}
}

// The plugin sees each client of the proxy at its own loopback address,
// whether it listens on loopback or on every address.
func TestProxyDialsFromClientAddress(t *testing.T) {
	for _, listen := range []string{"127.0.0.1:0", "0.0.0.0:0"} {
		t.Run(listen, func(t *testing.T) {
			ln, err := net.Listen("tcp4", listen)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			from := make(chan string, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					from <- err.Error()
					return
				}
				from <- c.RemoteAddr().String()
				c.Close()
			}()
			src := viewerSource("192.168.7.7:1234")
			ctx := context.WithValue(context.Background(), proxyTargetKey{}, &proxyTarget{source: src})
			c, err := dialPlugin(ctx, "tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
			host, _, _ := net.SplitHostPort(<-from)
			if host != src.String() {
				t.Errorf("plugin saw %s, want %s", host, src)
			}
		})
	}
}

// A plugin serving TLS is accepted with the certificate of the output's
// config, though it names no IP address; any other certificate is not.
func TestProxyVerifiesPluginCertificate(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") }))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are the point
	srv.StartTLS()
	defer srv.Close()
	dir := t.TempDir()
	right := filepath.Join(dir, "right.pem")
	if err := os.WriteFile(right, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.TLS.Certificates[0].Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	wrong := filepath.Join(dir, "wrong.pem")
	if err := os.WriteFile(wrong, selfSigned(t), 0o600); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(srv.URL)
	for _, tc := range []struct {
		name, pin string
		ok        bool
	}{
		{"pinned", right, true},
		{"another certificate pinned", wrong, false},
		{"no pin, not in the system's roots", "", false},
		{"pinned file missing", filepath.Join(dir, "nope.pem"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.WithValue(context.Background(), proxyTargetKey{}, &proxyTarget{pin: tc.pin, source: viewerSource("10.1.1.1:1")})
			c, err := dialPluginTLS(ctx, "tcp", u.Host)
			if (err == nil) != tc.ok {
				t.Fatalf("dial: %v, want ok=%v", err, tc.ok)
			}
			if c != nil {
				if _, ok := c.(*tls.Conn); !ok {
					t.Errorf("got %T, want a TLS connection", c)
				}
				c.Close()
			}
		})
	}
}

// selfSigned returns a PEM certificate for 127.0.0.1 that no server uses.
func selfSigned(t *testing.T) []byte { return testcert.New(t, "127.0.0.1").CertPEM }

func TestProxyClassify(t *testing.T) {
	for _, tc := range []struct{ path, kind, cam string }{
		{"/cameras/front/stream.mjpg", "mjpeg", "front"},
		{"/cameras/front/snapshot.jpg", "still", "front"},
		{"/cameras/front/", "player", "front"},
		{"/cameras/front/whep", "whep", "front"},
		{"/cameras/front/timelapse/", "", "front"},
		{"/", "", ""},
		{"/cameras/", "", ""},
		{"/cameras/front", "", ""},
		{"/other/front/stream.mjpg", "", ""},
	} {
		if kind, cam := classify(tc.path); kind != tc.kind || cam != tc.cam {
			t.Errorf("classify(%q) = %q, %q; want %q, %q", tc.path, kind, cam, tc.kind, tc.cam)
		}
	}
}

func TestProxyPathsAreGuarded(t *testing.T) {
	for _, tc := range []struct {
		path    string
		proxied bool
	}{
		{"/outputs/web/cameras/a/stream.mjpg", true},
		{"/outputs/web/", true},
		{"/outputs/web", true},
		{"/outputs/", false},
		{"/outputs", false},
		{"/outputs/web/../../api/status", false},
		{"/outputs/../api/reload", false},
		{"/api/status", false},
		{"//outputs/web/", true}, // cleaned the same way ServeMux does
		// ServeMux routes on the escaped path: an escaped slash is no
		// path separator to it, so this is the dashboard's camera page.
		{"/cameras/x%2F..%2F..%2Foutputs%2Fweb/", false},
		{"/outputs%2Fweb/cameras/a/stream.mjpg", false},
	} {
		r := httptest.NewRequest("GET", "http://camd"+tc.path, nil)
		if got := proxied(r); got != tc.proxied {
			t.Errorf("proxied(%q) = %v, want %v", tc.path, got, tc.proxied)
		}
	}
	if !strings.HasSuffix(proxyPrefix, "/") {
		t.Fatal("proxyPrefix must end in /")
	}
}

func TestProxyCertOf(t *testing.T) {
	for _, tc := range []struct{ block, top, want string }{
		{"listen: 127.0.0.1:0\n", "", ""},
		{"listen: 127.0.0.1:0\n", "/etc/camd/cert.pem", "/etc/camd/cert.pem"},
		{"listen: 127.0.0.1:0\ntls: {cert: own.pem, key: own.key}\n", "/etc/camd/cert.pem", "own.pem"},
		{"not: [yaml", "/etc/camd/cert.pem", "/etc/camd/cert.pem"},
	} {
		spec := pluginhost.Spec{ConfigYAML: []byte(tc.block)}
		spec.Security.TLSCert = tc.top
		if got := certOf(spec); got != tc.want {
			t.Errorf("certOf(%q, top %q) = %q, want %q", tc.block, tc.top, got, tc.want)
		}
	}
}

// TestCrossSiteChanges: a request that changes something is refused when
// another site's page sends it; camd's own pages, allowed origins and
// clients that are not browsers are not.
func TestCrossSiteChanges(t *testing.T) {
	allowed := []string{"https://dash.example"}
	for _, tc := range []struct {
		name, method, origin, fetchSite string
		refused                         bool
	}{
		{"curl", "POST", "", "", false},
		{"camd's own page", "POST", "http://camd:8080", "same-origin", false},
		{"camd's own page behind a proxy that rewrites Host", "POST", "https://cams.example.net", "same-origin", false},
		{"an allowed origin", "POST", "https://dash.example", "cross-site", false},
		{"another site", "POST", "http://evil.example", "cross-site", true},
		{"another site, old browser", "POST", "http://evil.example", "", true},
		{"a sandboxed page", "POST", "null", "", true},
		{"Sec-Fetch-Site alone", "DELETE", "", "cross-site", true},
		{"a GET from another site", "GET", "http://evil.example", "cross-site", false},
	} {
		r := httptest.NewRequest(tc.method, "http://camd:8080/api/reload", nil)
		if tc.origin != "" {
			r.Header.Set("Origin", tc.origin)
		}
		if tc.fetchSite != "" {
			r.Header.Set("Sec-Fetch-Site", tc.fetchSite)
		}
		if got := crossSite(r, allowed); got != tc.refused {
			t.Errorf("%s: crossSite = %v, want %v", tc.name, got, tc.refused)
		}
	}
}
