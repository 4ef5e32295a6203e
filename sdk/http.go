package sdk

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// DefaultMaxViewersPerClient is max_viewers_per_client when the config
// block does not set it.
const DefaultMaxViewersPerClient = 10

// HTTPConfig is the part of an output's config block that HTTP reads. Embed
// it inline in the plugin's Config, so its keys sit beside the plugin's own
// and every plugin gets new ones (TLS, CORS) without changing, and start
// from DefaultHTTPConfig:
//
//	type Config struct {
//		sdk.HTTPConfig `yaml:",inline"`
//		MaxViewers     int `yaml:"max_viewers"`
//	}
//
//	cfg := Config{HTTPConfig: sdk.DefaultHTTPConfig("127.0.0.1:8081"), MaxViewers: 100}
//	errs := sdk.AsConfigErrors(sdk.DecodeConfig(c.Raw, &cfg))
//	errs = append(errs, cfg.HTTPConfig.Check()...)
type HTTPConfig struct {
	// Listen is the host:port to serve on.
	Listen string `yaml:"listen"`
	// MaxViewersPerClient caps the viewer slots (streams, sessions,
	// waiting requests; see HTTP.Acquire) one client address holds at
	// once, so one client cannot take every slot.
	MaxViewersPerClient int `yaml:"max_viewers_per_client"`
	// TLS serves HTTPS with this certificate instead of the one from
	// config.yaml's top-level tls (absolute paths).
	TLS *TLSFiles `yaml:"tls"`
}

// TLSFiles names a certificate and its key.
type TLSFiles struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// DefaultHTTPConfig returns the defaults, listening on listen.
func DefaultHTTPConfig(listen string) HTTPConfig {
	return HTTPConfig{Listen: listen, MaxViewersPerClient: DefaultMaxViewersPerClient}
}

// Check validates c, naming the offending keys.
func (c HTTPConfig) Check() ConfigErrors {
	var errs ConfigErrors
	if _, port, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, Errorf("listen", "want host:port, e.g. 127.0.0.1:8081 (got %q)", c.Listen))
	} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		errs = append(errs, Errorf("listen", "want a port number from 0 to 65535 (got %q)", port))
	}
	if c.MaxViewersPerClient < 1 {
		errs = append(errs, Errorf("max_viewers_per_client", "must be at least 1"))
	}
	if c.TLS != nil {
		if c.TLS.Cert == "" || c.TLS.Key == "" {
			errs = append(errs, Errorf("tls", "needs both cert and key"))
		} else if _, err := TLSConfig(c.TLS.Cert, c.TLS.Key); err != nil {
			errs = append(errs, Errorf("tls", "%v", err))
		}
	}
	return errs
}

// The limits every plugin's HTTP server applies. They are not config keys:
// they bound what an idle or half-open connection costs, which no viewer
// notices; the viewer caps that users tune are in HTTPConfig.
const (
	// readHeaderTimeout is how long a connection may take to send its
	// request headers; a half-open or trickling connection is closed then.
	readHeaderTimeout = 5 * time.Second
	// idleTimeout closes keep-alive connections nobody uses.
	idleTimeout = 30 * time.Second
	// maxHeaderBytes bounds one request's headers (net/http's default is
	// 1 MB, which thousands of slow connections could each fill).
	maxHeaderBytes = 32 << 10
	// extraConnsPerClient is how many connections a client may hold beyond
	// its viewer slots: a browser's page loads, keep-alive, stills.
	extraConnsPerClient = 64
	// extraConns is how many connections the server holds beyond its
	// max_viewers; about 15 MB at most when every one is half-open.
	extraConns = 1024
	// retryAfter is the Retry-After of every refusal.
	retryAfter = 5 * time.Second
)

// HTTP is an output's web server. It listens on the configured address and
// serves the plugin's handler with what every camd plugin's HTTP does the
// same way: header and idle timeouts; caps on connections per client
// address and in all, enforced before net/http spends memory on them;
// caps on viewers per client and in all (Acquire); memory given back to
// the system when a flood of connections ends; and the Security camd sent
// (found in the context given to Listen, which is Start's): HTTPS, users
// and tokens with camera scopes, failed-login limits, and CORS for the
// allowed origins only. Plugins get all of it without writing any.
//
// Set the exported fields, then call Listen, Serve and, at the end,
// Shutdown. In an Output:
//
//	func (m *MJPEG) Start(ctx context.Context) ([]string, error) {
//		m.http = &sdk.HTTP{Config: m.cfg.HTTPConfig, MaxViewers: m.cfg.MaxViewers, Log: m.log}
//		if err := m.http.Listen(ctx); err != nil {
//			return nil, err // a *ConfigError for "listen": camd shows the config line
//		}
//		m.http.Serve(m.Handler())
//		return []string{m.http.URL("/")}, nil
//	}
//
//	func (m *MJPEG) Stop(ctx context.Context) error { return m.http.Shutdown(ctx) }
//
//	func (m *MJPEG) serveStream(w http.ResponseWriter, r *http.Request) {
//		release, ok := m.http.Acquire(w, r)
//		if !ok {
//			return // refused with 429 or 503 and Retry-After
//		}
//		defer release()
//		for { /* write frames until r.Context() ends */ }
//	}
//
// Request contexts end when Shutdown begins, so long-lived handlers
// (streams, long polls) return then: net/http's own Shutdown would wait for
// them forever. Handlers set their own write deadlines (for example with
// http.ResponseController): there is no server-wide write timeout, which
// would cut streams.
type HTTP struct {
	// Config is the listen address and per-client cap from the config block.
	Config HTTPConfig
	// MaxViewers caps the viewer slots held in all, 0 for no cap (the
	// connection caps still apply).
	MaxViewers int
	// Log receives the server's warnings: refused clients (at most every
	// few seconds), net/http's own errors.
	Log *slog.Logger
	// Public lists the routes (ServeMux patterns, "GET /cameras/{camera}/{$}")
	// served without credentials even when auth is required: pages that
	// show nothing by themselves and explain what to do without a token.
	Public []string

	auth   *Authenticator // from the Security in Listen's context
	demand *Demand        // from Listen's context; nil: the output wants everything
	scheme string         // "http" or "https"

	mu       sync.Mutex
	ln       net.Listener
	srv      *http.Server
	cancel   context.CancelFunc // ends request contexts and the reclaimer
	wg       sync.WaitGroup     // Serve's goroutines
	shutdown bool

	conns    conns
	viewers  counts[clientAddr]
	refused  refusals
	refusers chan struct{} // a semaphore: connections being refused with an answer
}

// HTTPStats are an HTTP server's counters, for a plugin's Status.
type HTTPStats struct {
	Connections        int    `json:"connections"`         // open now
	ConnectionsRefused uint64 `json:"connections_refused"` // closed at once: too many from one client, or in all
	Viewers            int    `json:"viewers"`             // slots held now (Acquire)
	ViewersRefused     uint64 `json:"viewers_refused"`     // 503: max_viewers reached
	ClientRefused      uint64 `json:"client_refused"`      // 429: max_viewers_per_client reached
	MemoryReclaims     uint64 `json:"memory_reclaims"`     // memory given back after a flood of connections
}

// Listen opens the configured address. Its error is a *ConfigError for the
// key "listen", so camd points at the line of the config that asked for an
// address in use or not on this machine.
func (h *HTTP) Listen(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ln != nil || h.shutdown {
		return errors.New("sdk: HTTP.Listen called twice")
	}
	if h.Log == nil {
		h.Log = slog.New(slog.DiscardHandler)
	}
	if errs := h.Config.Check(); len(errs) > 0 {
		return errs
	}
	// Who may connect comes with Start's context. A context without it
	// (one made afresh) fails here: serving everyone instead would turn
	// the user's auth off without a word.
	sec, ok := securityIn(ctx)
	if !ok {
		return errors.New("sdk: HTTP.Listen needs the context given to Start (it says who may connect), or one made with sdk.WithSecurity")
	}
	ln, err := new(net.ListenConfig).Listen(ctx, "tcp", h.Config.Listen)
	if err != nil {
		return Errorf("listen", "cannot listen on %s: %v", h.Config.Listen, listenCause(err))
	}
	h.conns.init(h.maxConns(), h.maxConnsPerClient())
	h.refusers = make(chan struct{}, maxRefusers)
	lim := &limitListener{Listener: ln, h: h}
	h.ln = lim
	h.auth = NewAuthenticator(sec, h.Log)
	h.demand = DemandFrom(ctx)
	h.scheme = "http"
	cert, key := sec.TLSCert, sec.TLSKey
	if t := h.Config.TLS; t != nil {
		cert, key = t.Cert, t.Key
	}
	if cert != "" {
		tc, err := TLSConfig(cert, key)
		if err != nil {
			ln.Close()
			h.ln = nil
			return Errorf("tls", "%v", err)
		}
		lim.tls = true
		h.ln, h.scheme = tls.NewListener(lim, tc), "https"
	}
	return nil
}

// listenCause is the part of a listen error a user acts on ("bind: address
// already in use"), without the operation and address they already see.
func listenCause(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}

// Serve serves handler in goroutines of h's own until Shutdown. It panics
// unless Listen succeeded: that is a bug in the plugin.
func (h *HTTP) Serve(handler http.Handler) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ln == nil || h.srv != nil || h.shutdown {
		panic("sdk: HTTP.Serve without a successful Listen, or twice")
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.srv = &http.Server{
		Handler:           h.middleware(handler),
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(h.Log.Handler(), slog.LevelWarn),
	}
	srv, ln := h.srv, h.ln
	h.wg.Add(2)
	go func() {
		defer h.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			h.Log.Error("serve", "addr", ln.Addr().String(), "err", err)
		}
	}()
	go func() {
		defer h.wg.Done()
		h.reclaim(ctx)
	}()
	h.Log.Info("listening", "addr", ln.Addr().String())
}

// Addr is the address listened on: with port 0 in the config, the port the
// system chose. Nil before Listen.
func (h *HTTP) Addr() net.Addr {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ln == nil {
		return nil
	}
	return h.ln.Addr()
}

// URL returns the server's URL for path ("/cameras/front/stream.mjpg"),
// for Start's result.
func (h *HTTP) URL(path string) string {
	return h.scheme + "://" + h.Addr().String() + path
}

// Shutdown ends request contexts, stops accepting, and waits until the
// connections closed and Serve's goroutines returned. If ctx ends first it
// closes the remaining connections and returns ctx's error. It may be
// called on a nil *HTTP, without or after a failed Listen, and more than
// once, so an Output's Stop can call it unconditionally.
func (h *HTTP) Shutdown(ctx context.Context) error {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	if h.shutdown {
		h.mu.Unlock()
		return nil
	}
	h.shutdown = true
	srv, ln, cancel := h.srv, h.ln, h.cancel
	h.mu.Unlock()
	if srv == nil {
		if ln != nil {
			return ln.Close()
		}
		return nil
	}
	cancel()
	err := srv.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, srv.Close())
	}
	h.wg.Wait()
	return err
}

// Stats returns the server's counters.
func (h *HTTP) Stats() HTTPStats {
	return HTTPStats{
		Connections:        h.conns.open(),
		ConnectionsRefused: h.refused.conns.Load(),
		Viewers:            h.viewers.total(),
		ViewersRefused:     h.refused.viewers.Load(),
		ClientRefused:      h.refused.client.Load(),
		MemoryReclaims:     h.conns.reclaims.Load(),
	}
}

// Acquire takes a viewer slot for r's client, for as long as the viewer
// holds something the server has few of: a stream, a WebRTC session, a
// request waiting for a frame. A client address holds at most
// Config.MaxViewersPerClient slots and the server at most MaxViewers.
// When refused, Acquire has answered w (429 for the client's cap, 503 for
// the server's, both with Retry-After and a message saying which limit)
// and returns ok false. Otherwise call release when the viewer is gone; it
// may outlive the request (a session) and may be called more than once.
func (h *HTTP) Acquire(w http.ResponseWriter, r *http.Request) (release func(), ok bool) {
	client := clientOf(r.RemoteAddr)
	n, refusal := h.viewers.acquire(client, h.Config.MaxViewersPerClient, h.MaxViewers)
	switch refusal {
	case refusedClient:
		h.refused.client.Add(1)
		h.refused.note(h.Log, "too many viewers from one client", client)
		refuse(w, http.StatusTooManyRequests, fmt.Sprintf(
			"too many viewers from %s: it has %d open and max_viewers_per_client is %d; close one and retry",
			client, n, h.Config.MaxViewersPerClient))
		return nil, false
	case refusedAll:
		h.refused.viewers.Add(1)
		refuse(w, http.StatusServiceUnavailable, fmt.Sprintf(
			"too many viewers (max_viewers is %d); retry later", h.MaxViewers))
		return nil, false
	}
	// A viewer of a camera wants its frames (see Demand).
	unhold := func() {}
	if cam := CameraOfPath(r.URL.Path); cam != "" {
		unhold = h.demand.Hold(cam)
	}
	var once sync.Once
	return func() { once.Do(func() { unhold(); h.viewers.release(client) }) }, true
}

func refuse(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Retry-After", strconv.Itoa(int(retryAfter/time.Second)))
	http.Error(w, msg, code)
}

func (h *HTTP) maxConnsPerClient() int {
	return max(h.Config.MaxViewersPerClient, 0) + extraConnsPerClient
}

func (h *HTTP) maxConns() int { return max(h.MaxViewers, 0) + extraConns }

// middleware wraps a plugin's handler in what every plugin's responses
// share: the CORS policy of allow_origins, then authentication and camera
// scopes (the Security camd sent), so a plugin writes no auth code.
func (h *HTTP) middleware(next http.Handler) http.Handler {
	var public *http.ServeMux
	if len(h.Public) > 0 {
		public = http.NewServeMux()
		for _, p := range h.Public {
			public.HandleFunc(p, func(http.ResponseWriter, *http.Request) {})
		}
	}
	guarded := h.auth.Guard(next, public, false)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		guarded.ServeHTTP(w, r)
	})
}
