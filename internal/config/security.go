package config

import (
	"crypto/sha256"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"github.com/camd/camd/sdk"
)

// Auth is config.yaml's auth block: who may watch and who may administer.
// Without it camd listens on loopback addresses only, unless
// allow_anonymous says that an open LAN is meant.
type Auth struct {
	AllowAnonymous bool        `yaml:"allow_anonymous"`
	Users          []AuthUser  `yaml:"users"`
	Tokens         []AuthToken `yaml:"tokens"`
}

// AuthUser is a person who logs in with a password (HTTP Basic): views
// every camera and administers camd.
type AuthUser struct {
	Name             string `yaml:"name"`
	PasswordHash     string `yaml:"password_hash"`      // bcrypt ($2a$/$2b$/$2y$)
	PasswordHashFile string `yaml:"password_hash_file"` // or a file holding it
}

// AuthToken is a named bearer token, for software (Home Assistant, an NVR,
// a script).
type AuthToken struct {
	Name      string   `yaml:"name"`
	Token     string   `yaml:"token"`
	TokenFile string   `yaml:"token_file"`
	Scope     string   `yaml:"scope"`   // view (default) or admin
	Cameras   []string `yaml:"cameras"` // view: only these; default all
}

// TLS names a certificate and its key, for HTTPS.
type TLS struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// CORS lists the origins whose pages may read camd's responses.
type CORS struct {
	AllowOrigins []string `yaml:"allow_origins"`
}

// Output auth settings.
const (
	AuthRequired = "required"
	AuthNone     = "none"
)

// minTokenLen keeps tokens guess-proof: ?token= travels in URLs.
const minTokenLen = 16

// checkAuth reads password_hash_file and token_file (relative to the
// config file) into their values and checks the auth block.
func (c *Config) checkAuth(fail func(key, format string, args ...any)) {
	a := c.Auth
	if a == nil {
		return
	}
	users := map[string]bool{}
	for i := range a.Users {
		u := &a.Users[i]
		p := fmt.Sprintf("auth.users[%d]", i)
		switch {
		case u.Name == "":
			fail(p+".name", "missing")
		case strings.ContainsAny(u.Name, ":\n"):
			fail(p+".name", "must not contain ':' (HTTP Basic separates name and password with it)")
		case users[u.Name]:
			fail(p+".name", "duplicate user %q", u.Name)
		}
		users[u.Name] = true
		switch {
		case u.PasswordHash != "" && u.PasswordHashFile != "":
			fail(p+".password_hash_file", "set password_hash or password_hash_file, not both")
		case u.PasswordHashFile != "":
			v, err := c.readSecretFile(u.PasswordHashFile)
			if err != nil {
				fail(p+".password_hash_file", "%v", err)
				continue
			}
			u.PasswordHash = v
		case u.PasswordHash == "":
			fail(p+".password_hash", "missing: a bcrypt hash, e.g. from `htpasswd -nbB alice PASSWORD` (the part after the colon)")
			continue
		}
		if _, err := bcrypt.Cost([]byte(u.PasswordHash)); err != nil {
			fail(p+".password_hash", "not a bcrypt hash ($2a$…, $2b$… or $2y$…): %v", err)
		}
	}
	names := map[string]bool{}
	for i := range a.Tokens {
		t := &a.Tokens[i]
		p := fmt.Sprintf("auth.tokens[%d]", i)
		switch {
		case t.Name == "":
			fail(p+".name", "missing")
		case names[t.Name]:
			fail(p+".name", "duplicate token name %q", t.Name)
		}
		names[t.Name] = true
		switch {
		case t.Token != "" && t.TokenFile != "":
			fail(p+".token_file", "set token or token_file, not both")
		case t.TokenFile != "":
			v, err := c.readSecretFile(t.TokenFile)
			if err != nil {
				fail(p+".token_file", "%v", err)
				continue
			}
			t.Token = v
		}
		if len(t.Token) < minTokenLen {
			fail(p+".token", "must be at least %d characters (e.g. from `openssl rand -hex 24`)", minTokenLen)
		}
		if t.Scope == "" {
			t.Scope = sdk.ScopeView
		}
		switch t.Scope {
		case sdk.ScopeView:
		case sdk.ScopeAdmin:
			if len(t.Cameras) > 0 {
				fail(p+".cameras", "only a view token is limited to cameras (an admin token sees all)")
			}
		default:
			fail(p+".scope", "unknown scope %q (want view or admin)", t.Scope)
		}
		for j, cam := range t.Cameras {
			if c.Camera(cam) == nil {
				fail(fmt.Sprintf("%s.cameras[%d]", p, j), "unknown camera %q", cam)
			}
		}
	}
	if a.AllowAnonymous && (len(a.Users) > 0 || len(a.Tokens) > 0) {
		fail("auth.allow_anonymous", "means no users and no tokens; remove it or them")
	}
	if !a.AllowAnonymous && len(a.Users) == 0 && len(a.Tokens) == 0 {
		fail("auth", "has no users and no tokens (or set allow_anonymous: true for an open camd)")
	}
}

// readSecretFile reads a secret from a file (relative paths are relative
// to the config file), without its trailing newline.
func (c *Config) readSecretFile(name string) (string, error) {
	if !filepath.IsAbs(name) {
		name = filepath.Join(filepath.Dir(c.Path), name)
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return "", err
	}
	v := strings.TrimRight(string(b), "\r\n")
	if v == "" {
		return "", fmt.Errorf("%s is empty", name)
	}
	return v, nil
}

// AuthEnabled reports whether camd checks credentials at all.
func (c *Config) AuthEnabled() bool {
	return c.Auth != nil && !c.Auth.AllowAnonymous && (len(c.Auth.Users) > 0 || len(c.Auth.Tokens) > 0)
}

// OpenAllowed reports whether camd may listen beyond loopback: with
// credentials to check, or explicitly anonymous.
func (c *Config) OpenAllowed() bool {
	return c.AuthEnabled() || (c.Auth != nil && c.Auth.AllowAnonymous)
}

// Security returns what output i (or, with i < 0, camd's own API) is told
// about who may use it.
func (c *Config) Security(i int) sdk.Security {
	sec := sdk.Security{AuthRequired: c.AuthEnabled()}
	if c.CORS != nil {
		sec.AllowOrigins = c.CORS.AllowOrigins
	}
	tls := c.TLS
	if i < 0 && c.HTTP.TLS != nil {
		tls = c.HTTP.TLS
	}
	if tls != nil {
		sec.TLSCert, sec.TLSKey = c.resolve(tls.Cert), c.resolve(tls.Key)
	}
	if i >= 0 && c.Outputs[i].Auth == AuthNone {
		// An open output checks no credential: it is not told them, so
		// adding a token for one client restarts no open output (nor
		// drops its viewers).
		sec.AuthRequired = false
		return sec
	}
	if c.Auth == nil {
		return sec
	}
	for _, u := range c.Auth.Users {
		sec.Users = append(sec.Users, sdk.User{Name: u.Name, PasswordBcrypt: []byte(u.PasswordHash)})
	}
	for _, t := range c.Auth.Tokens {
		sec.Tokens = append(sec.Tokens, sdk.Token{Name: t.Name, SHA256: sha256.Sum256([]byte(t.Token)), Scope: t.Scope, Cameras: t.Cameras})
	}
	return sec
}

// resolve makes a path relative to the config file absolute.
func (c *Config) resolve(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(filepath.Dir(c.Path), p)
}

// checkTLS checks that a tls block names both files and that they load.
func (c *Config) checkTLS(key string, t *TLS, fail func(key, format string, args ...any)) {
	if t == nil {
		return
	}
	if t.Cert == "" || t.Key == "" {
		fail(key, "needs both cert and key")
		return
	}
	if _, err := sdk.TLSConfig(c.resolve(t.Cert), c.resolve(t.Key)); err != nil {
		fail(key, "%v", err)
	}
}

// IsLoopback reports whether a listen address accepts connections from
// this machine only.
func IsLoopback(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// OpenRefusal is the message for a listener beyond loopback without auth.
func OpenRefusal(listen string) string {
	return fmt.Sprintf("%s is reachable from other machines, but camd has no auth configured: "+
		"add an auth block with users or tokens (see README: Exposing camd on your network), "+
		"or set auth: {allow_anonymous: true} to serve everyone on your network", listen)
}
