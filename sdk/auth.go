package sdk

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Security says who may use an output's HTTP endpoints. camd builds it
// from config.yaml's auth, tls and cors blocks and hands it to every
// plugin, and HTTP enforces it, so a plugin gets authentication without
// writing any. Passwords arrive only as bcrypt hashes, tokens only as
// SHA-256 digests.
type Security struct {
	// AuthRequired: every request needs a credential, except CORS
	// preflights and the paths a plugin declares public.
	AuthRequired bool
	Users        []User
	Tokens       []Token
	// TLSCert and TLSKey are the certificate and key files listeners use
	// unless their own config names others; empty: plain HTTP.
	TLSCert, TLSKey string
	// AllowOrigins are the origins whose pages may read responses (CORS).
	AllowOrigins []string
}

// User is a person, with HTTP Basic: may view every camera and administer.
type User struct {
	Name           string
	PasswordBcrypt []byte
}

// Token is a named bearer token with a scope.
type Token struct {
	Name    string
	SHA256  [sha256.Size]byte
	Scope   string   // ScopeView or ScopeAdmin
	Cameras []string // ScopeView: only these cameras; empty: all
}

// Token scopes.
const (
	ScopeView  = "view"  // streams, stills and WebRTC of the token's cameras
	ScopeAdmin = "admin" // camd's API and reload; may also view every camera
)

// Principal is who a request authenticated as.
type Principal struct {
	Name    string   // the user's or the token's name
	Admin   bool     // may use camd's API
	cameras []string // nil: every camera
}

// CanView reports whether p may see camera.
func (p *Principal) CanView(camera string) bool {
	return p.cameras == nil || slices.Contains(p.cameras, camera)
}

type principalKey struct{}

// PrincipalOf returns who r authenticated as, or nil when the output needs
// no authentication.
func PrincipalOf(r *http.Request) *Principal {
	p, _ := r.Context().Value(principalKey{}).(*Principal)
	return p
}

// Failed-login limits per client (an IPv4 address or an IPv6 /64): after
// maxFailures within failureWindow the client gets 429 until the window
// has passed, for all but credentials that cost nothing to check and
// cannot be guessed (see Authenticate). At most maxClientsTracked
// clients are remembered.
const (
	maxFailures       = 10
	failureWindow     = time.Minute
	maxClientsTracked = 4096
	// verifiedFor is how long a checked user:password pair is remembered,
	// so a page polling stills does not pay bcrypt's deliberate ~50 ms per
	// request. Only a SHA-256 of the pair is kept.
	verifiedFor = 5 * time.Minute
)

// Authenticator checks requests against a Security. It is safe for
// concurrent use.
type Authenticator struct {
	sec Security
	log *slog.Logger
	now func() time.Time

	mu       sync.Mutex
	verified map[[sha256.Size]byte]time.Time // SHA-256 of "user\x00password" → checked at
	failures map[string]*failures            // by client address
	warned   time.Time                       // last failure warning, to bound the log
}

type failures struct {
	count int
	since time.Time
}

// NewAuthenticator returns an Authenticator for sec, logging failed
// attempts (never the credential) to log.
func NewAuthenticator(sec Security, log *slog.Logger) *Authenticator {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Authenticator{sec: sec, log: log, now: time.Now, verified: map[[sha256.Size]byte]time.Time{}, failures: map[string]*failures{}}
}

// AllowOrigins returns the origins whose pages may read responses (CORS).
func (a *Authenticator) AllowOrigins() []string {
	if a == nil {
		return nil
	}
	return a.sec.AllowOrigins
}

// Enabled reports whether requests need a credential.
func (a *Authenticator) Enabled() bool { return a != nil && a.sec.AuthRequired }

// dummyHash is compared against when a user name is unknown, so a wrong
// name costs as long as a wrong password and timing reveals no names. (A
// bcrypt hash at the default cost of a password nobody uses.)
const dummyHash = "$2a$10$gMwF1NDkezkyainroS6do.3WL4OZg3Mv8KW85FYvnSr/RaFPtJDDS"

// Authenticate returns who r is. It fails with 401 when r carries no valid
// credential, and 429 when r's client failed too often of late.
//
// A blocked client is still let in with a valid token, or a user's
// password checked in the last verifiedFor: both cost a hash to check and
// cannot be guessed (tokens are long and random; the password was proved
// already), so refusing them would only let an attacker lock out everyone
// who shares its address, such as every client of a reverse proxy. Only
// new password checks (bcrypt, guessable) are refused.
func (a *Authenticator) Authenticate(r *http.Request) (*Principal, int) {
	client := clientOf(r.RemoteAddr).String()
	blocked := a.blocked(client)
	cred, ok := ParseCredential(r.Header.Get("Authorization"), r.URL.Query().Get("token"))
	switch {
	case !ok && blocked:
		return nil, http.StatusTooManyRequests
	case !ok:
		return nil, http.StatusUnauthorized
	}
	var p *Principal
	if cred.User != "" || cred.Kind == "basic" {
		p = a.checkUser(cred.User, cred.Secret, !blocked)
	} else {
		p = a.checkToken(cred.Secret)
	}
	switch {
	case p != nil:
		return p, http.StatusOK
	case blocked:
		return nil, http.StatusTooManyRequests
	}
	a.fail(client, cred)
	return nil, http.StatusUnauthorized
}

// checkUser checks a user's password: against those proved in the last
// verifiedFor, then, if bcrypt, with bcrypt.
func (a *Authenticator) checkUser(name, password string, bcryptToo bool) *Principal {
	key := sha256.Sum256([]byte(name + "\x00" + password))
	a.mu.Lock()
	at, ok := a.verified[key]
	a.mu.Unlock()
	if ok && a.now().Sub(at) < verifiedFor {
		return &Principal{Name: name, Admin: true}
	}
	if !bcryptToo {
		return nil
	}
	hash := []byte(dummyHash)
	i := slices.IndexFunc(a.sec.Users, func(u User) bool { return u.Name == name })
	if i >= 0 {
		hash = a.sec.Users[i].PasswordBcrypt
	}
	// bcrypt compares in constant time.
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil || i < 0 {
		return nil
	}
	a.mu.Lock()
	if len(a.verified) > 1024 { // bounded: forget everything rather than grow
		clear(a.verified)
	}
	a.verified[key] = a.now()
	a.mu.Unlock()
	return &Principal{Name: name, Admin: true}
}

// checkToken compares the token's digest with every configured one in
// constant time, without stopping at a match, so timing tells nothing
// about which or how many tokens exist.
func (a *Authenticator) checkToken(token string) *Principal {
	sum := sha256.Sum256([]byte(token))
	found := -1
	for i := range a.sec.Tokens {
		if subtle.ConstantTimeCompare(sum[:], a.sec.Tokens[i].SHA256[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return nil
	}
	t := a.sec.Tokens[found]
	p := &Principal{Name: t.Name, Admin: t.Scope == ScopeAdmin}
	if !p.Admin && len(t.Cameras) > 0 {
		p.cameras = t.Cameras
	}
	return p
}

func (a *Authenticator) blocked(client string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	f := a.failures[client]
	if f == nil {
		return false
	}
	if a.now().Sub(f.since) > failureWindow {
		delete(a.failures, client)
		return false
	}
	return f.count >= maxFailures
}

func (a *Authenticator) fail(client string, cred Credential) {
	a.mu.Lock()
	f := a.failures[client]
	if f == nil || a.now().Sub(f.since) > failureWindow {
		if f == nil && len(a.failures) >= maxClientsTracked {
			a.forgetOldest()
		}
		f = &failures{since: a.now()}
		a.failures[client] = f
	}
	f.count++
	n := f.count
	a.mu.Unlock()
	who := "a token"
	if cred.Kind == "basic" {
		who = fmt.Sprintf("user %q", cred.User)
	}
	a.log.Warn("authentication failed", "client", client, "with", who, "failures", n)
}

// forgetOldest makes room in failures: the expired entries, else the
// oldest client not blocked, else the oldest. (Clearing the table would
// let a botnet failing from many addresses unblock a client.)
func (a *Authenticator) forgetOldest() {
	now := a.now()
	var oldest, oldestFree string
	for c, f := range a.failures {
		switch {
		case now.Sub(f.since) > failureWindow:
			delete(a.failures, c)
		case f.count < maxFailures:
			if oldestFree == "" || f.since.Before(a.failures[oldestFree].since) {
				oldestFree = c
			}
		case oldest == "" || f.since.Before(a.failures[oldest].since):
			oldest = c
		}
	}
	switch {
	case len(a.failures) < maxClientsTracked:
	case oldestFree != "":
		delete(a.failures, oldestFree)
	default:
		delete(a.failures, oldest)
	}
}

// Credential is what a request presents: HTTP Basic, a bearer token, or a
// token in the URL's query.
type Credential struct {
	Kind   string // "basic", "bearer" or "query"
	User   string // basic only
	Secret string // the password or the token
}

// ParseCredential reads an Authorization header value, or else a ?token=
// value. It never fails loudly: anything malformed is simply no
// credential.
func ParseCredential(authorization, queryToken string) (Credential, bool) {
	if authorization != "" {
		scheme, rest, _ := strings.Cut(strings.TrimSpace(authorization), " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToLower(scheme) {
		case "bearer":
			if rest != "" && len(rest) <= 4096 {
				return Credential{Kind: "bearer", Secret: rest}, true
			}
		case "basic":
			if len(rest) > 8192 {
				return Credential{}, false
			}
			b, err := base64.StdEncoding.DecodeString(rest)
			if err != nil {
				return Credential{}, false
			}
			user, pass, ok := strings.Cut(string(b), ":")
			if ok && user != "" {
				return Credential{Kind: "basic", User: user, Secret: pass}, true
			}
		}
		return Credential{}, false
	}
	if queryToken != "" && len(queryToken) <= 4096 {
		return Credential{Kind: "query", Secret: queryToken}, true
	}
	return Credential{}, false
}

// Guard wraps next with what Security asks of every request: the CORS
// policy, then authentication (except for CORS preflights and public
// paths), then the camera scope of the principal for paths under
// /cameras/<camera>/. admin says next is camd's API, which needs the admin
// scope.
func (a *Authenticator) Guard(next http.Handler, public *http.ServeMux, admin bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.cors(w, r)
		if IsPreflight(r) {
			// Preflights carry no credentials, by the CORS spec, so no
			// handler sees them: they learn what an origin may send
			// (the headers above), nothing more.
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if !a.Enabled() || isPublic(public, r) {
			next.ServeHTTP(w, r)
			return
		}
		p, code := a.Authenticate(r)
		switch {
		case code == http.StatusTooManyRequests:
			w.Header().Set("Retry-After", strconv.Itoa(int(failureWindow/time.Second)))
			http.Error(w, "too many failed logins from your address; wait a minute", code)
			return
		case p == nil:
			challenge(w, r)
			http.Error(w, "authentication required: log in, or add ?token=<token> (see camd's README: Exposing camd on your network)", http.StatusUnauthorized)
			return
		case admin && !p.Admin:
			http.Error(w, fmt.Sprintf("%s may not use camd's API (needs an admin token or a user)", p.Name), http.StatusForbidden)
			return
		}
		if cam := CameraOfPath(r.URL.Path); cam != "" && !p.CanView(cam) {
			http.Error(w, fmt.Sprintf("%s may not view camera %q", p.Name, cam), http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

// challenge asks a browser for a user name and password on page and stream
// loads; script requests (WHEP) get a Bearer challenge, which browsers do
// not turn into a login prompt.
func challenge(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		w.Header().Set("WWW-Authenticate", `Basic realm="camd", charset="UTF-8"`)
	} else {
		w.Header().Set("WWW-Authenticate", `Bearer realm="camd"`)
	}
}

// IsPreflight reports whether r is a CORS preflight.
func IsPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
}

// cors answers for the origins in AllowOrigins; other origins get no CORS
// headers, so their pages cannot read responses. A named origin's pages
// may send the browser's saved login (Basic); "*" lets any page read
// responses, but only with a credential of its own (a token it sends in
// Authorization or ?token=): browsers never send a saved login to a
// wildcard, so a site the user happens to visit cannot use theirs.
func (a *Authenticator) cors(w http.ResponseWriter, r *http.Request) {
	origin := r.Header.Get("Origin")
	if origin == "" || a == nil {
		return
	}
	h := w.Header()
	h.Add("Vary", "Origin")
	switch {
	case slices.Contains(a.sec.AllowOrigins, origin):
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Credentials", "true")
	case slices.Contains(a.sec.AllowOrigins, "*"):
		h.Set("Access-Control-Allow-Origin", "*")
	default:
		return
	}
	h.Set("Access-Control-Expose-Headers", "Location, Link, ETag, Accept-Post, X-Camera-State, X-Frame-Seq, X-Timestamp")
	if r.Method == http.MethodOptions {
		h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE, PATCH, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match")
		h.Set("Access-Control-Max-Age", "600")
	}
}

func isPublic(public *http.ServeMux, r *http.Request) bool {
	if public == nil {
		return false
	}
	_, pattern := public.Handler(r)
	return pattern != ""
}

// CameraOfPath returns the camera a path is about ("/cameras/front/x" →
// "front"), or "".
func CameraOfPath(path string) string {
	rest, ok := strings.CutPrefix(path, "/cameras/")
	if !ok {
		return ""
	}
	cam, _, _ := strings.Cut(rest, "/")
	return cam
}
