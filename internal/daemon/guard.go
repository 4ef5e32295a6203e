package daemon

import (
	"net"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"

	"github.com/camd/camd/internal/config"
	"github.com/camd/camd/sdk"
)

// guard is what stands before the daemon's API: a Host check against DNS
// rebinding, then, when auth is configured, a credential with the admin
// scope for everything but /healthz. Both follow the config on reload.
type guard struct {
	auth  *sdk.Authenticator
	hosts []string // host names allowed besides IP addresses and localhost
}

func newGuard(cfg *config.Config, d *Daemon) *guard {
	g := &guard{auth: sdk.NewAuthenticator(cfg.Security(-1), d.log.With("listener", "api"))}
	if h, _, err := net.SplitHostPort(cfg.HTTP.Listen); err == nil && h != "" {
		g.hosts = append(g.hosts, strings.ToLower(h))
	}
	for _, h := range cfg.HTTP.AllowedHosts {
		g.hosts = append(g.hosts, strings.ToLower(h))
	}
	return g
}

// allowedHost reports whether a request's Host names this camd. A page on
// evil.example that rebinds its name to 127.0.0.1 sends Host:
// evil.example, which is refused; IP addresses need no rebinding, so any
// is fine.
func (g *guard) allowedHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
	return net.ParseIP(host) != nil || host == "localhost" || slices.Contains(g.hosts, host)
}

// secure wraps the API's handler in the current guard.
func (d *Daemon) secure(next http.Handler) http.Handler {
	public := http.NewServeMux()
	public.HandleFunc("GET /healthz", func(http.ResponseWriter, *http.Request) {})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g := d.guard.Load()
		if !g.allowedHost(r.Host) {
			http.Error(w, "unknown host name "+r.Host+": add it to http.allowed_hosts in camd's config", http.StatusMisdirectedRequest)
			return
		}
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if crossSite(r, g.auth.AllowOrigins()) {
			// A page elsewhere posting to camd (a reload) with the
			// browser's saved login, or from this machine without auth.
			http.Error(w, "refused: a request from another site's page (add its origin to cors.allow_origins to allow it)", http.StatusForbidden)
			return
		}
		if proxied(r) {
			// An output's own pages, streams and WHEP: the proxy checks
			// credentials as the output does (view scope, its cameras).
			next.ServeHTTP(w, r)
			return
		}
		if !g.auth.Enabled() && r.Method == http.MethodPost && !fromLoopback(r) {
			// Without auth, only this machine may change anything.
			http.Error(w, "allowed from this machine only (or configure auth)", http.StatusForbidden)
			return
		}
		g.auth.Guard(next, public, true).ServeHTTP(w, r)
	})
}

// crossSite reports whether r changes something (not GET, HEAD or
// OPTIONS) and comes from another site's page: the browser says so in
// Sec-Fetch-Site, or its Origin is neither camd's own (the Host it asked
// for) nor one of allowed. Clients that are not browsers send neither.
func crossSite(r *http.Request, allowed []string) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	origin := r.Header.Get("Origin")
	switch {
	case origin != "" && (slices.Contains(allowed, origin) || slices.Contains(allowed, "*")):
		return false
	case r.Header.Get("Sec-Fetch-Site") == "cross-site":
		return true
	case r.Header.Get("Sec-Fetch-Site") == "same-origin":
		return false // camd's own page, whatever Host a reverse proxy sent on
	case origin == "":
		return false // not a browser
	case origin == "null":
		return true // a sandboxed frame or a file
	}
	u, err := url.Parse(origin)
	return err != nil || !strings.EqualFold(u.Host, r.Host)
}

// proxied reports whether r is for an output under /outputs/ (after
// cleaning: /outputs/x/../../api/status is the API, not an output). Both
// the path and its escaped form must say so: ServeMux routes on the
// escaped one, where %2F is no separator, so /cameras/x%2F..%2F..%2Foutputs%2Fy/
// is a camera page, whatever its decoded path says.
func proxied(r *http.Request) bool {
	return strings.HasPrefix(path.Clean("/"+r.URL.Path), proxyPrefix) &&
		strings.HasPrefix(path.Clean("/"+r.URL.EscapedPath()), proxyPrefix)
}
