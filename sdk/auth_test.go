package sdk

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func TestParseCredential(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, tc := range []struct {
		header, query string
		want          Credential
		ok            bool
	}{
		{"Bearer abc", "", Credential{Kind: "bearer", Secret: "abc"}, true},
		{"bearer   abc  ", "", Credential{Kind: "bearer", Secret: "abc"}, true},
		{"Basic " + b64("alice:pw:with:colons"), "", Credential{Kind: "basic", User: "alice", Secret: "pw:with:colons"}, true},
		{"Basic " + b64("alice:"), "", Credential{Kind: "basic", User: "alice"}, true},
		{"Basic " + b64(":pw"), "", Credential{}, false},
		{"Basic " + b64("nocolon"), "", Credential{}, false},
		{"Basic !!!", "", Credential{}, false},
		{"Bearer", "", Credential{}, false},
		{"Digest x", "tok", Credential{}, false}, // a header that is not ours does not fall back to the query
		{"", "tok", Credential{Kind: "query", Secret: "tok"}, true},
		{"", "", Credential{}, false},
		{"Bearer " + strings.Repeat("x", 5000), "", Credential{}, false},
	} {
		got, ok := ParseCredential(tc.header, tc.query)
		if ok != tc.ok || got != tc.want {
			t.Errorf("ParseCredential(%.40q, %q) = %+v, %v; want %+v, %v", tc.header, tc.query, got, ok, tc.want, tc.ok)
		}
	}
}

func FuzzParseCredential(f *testing.F) {
	f.Add("Basic YWxpY2U6cHc=", "")
	f.Add("Bearer x", "")
	f.Add("", "tok")
	f.Fuzz(func(t *testing.T, header, query string) {
		c, ok := ParseCredential(header, query)
		if !ok {
			if c != (Credential{}) {
				t.Fatalf("no credential but %+v", c)
			}
			return
		}
		switch c.Kind {
		case "basic":
			if c.User == "" || strings.Contains(c.User, ":") {
				t.Fatalf("basic user %q", c.User)
			}
		case "bearer", "query":
			if c.Secret == "" || c.User != "" {
				t.Fatalf("%s credential %+v", c.Kind, c)
			}
		default:
			t.Fatalf("kind %q", c.Kind)
		}
	})
}

// Who gets in, as a table: users see everything, tokens their scope,
// failures are counted per address and then refused with 429.
func TestAuthenticator(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw-alice"), bcrypt.MinCost)
	sec := Security{
		AuthRequired: true,
		Users:        []User{{Name: "alice", PasswordBcrypt: hash}},
		Tokens: []Token{
			{Name: "ops", SHA256: sha256.Sum256([]byte("admin-token")), Scope: ScopeAdmin},
			{Name: "ha", SHA256: sha256.Sum256([]byte("view-token")), Scope: ScopeView, Cameras: []string{"front"}},
		},
	}
	a := NewAuthenticator(sec, nil)
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(PrincipalOf(r).Name)) })
	h := a.Guard(ok, nil, false)
	api := a.Guard(ok, nil, true)
	do := func(handler http.Handler, path, remote string, set func(*http.Request)) (int, string) {
		r := httptest.NewRequest("GET", path, nil)
		r.RemoteAddr = remote
		if set != nil {
			set(r)
		}
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, r)
		return w.Code, strings.TrimSpace(w.Body.String())
	}
	basic := func(u, p string) func(*http.Request) { return func(r *http.Request) { r.SetBasicAuth(u, p) } }
	bearer := func(tok string) func(*http.Request) {
		return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
	}
	for _, tc := range []struct {
		name    string
		handler http.Handler
		path    string
		set     func(*http.Request)
		code    int
		body    string
	}{
		{"no credential", h, "/cameras/front/x", nil, 401, ""},
		{"user", h, "/cameras/back/x", basic("alice", "pw-alice"), 200, "alice"},
		{"user again (remembered)", h, "/cameras/back/x", basic("alice", "pw-alice"), 200, "alice"},
		{"user on the API", api, "/api/status", basic("alice", "pw-alice"), 200, "alice"},
		{"admin token", api, "/api/status", bearer("admin-token"), 200, "ops"},
		{"view token, its camera", h, "/cameras/front/stream", bearer("view-token"), 200, "ha"},
		{"view token in the query", h, "/cameras/front/stream?token=view-token", nil, 200, "ha"},
		{"view token, another camera", h, "/cameras/back/stream", bearer("view-token"), 403, ""},
		{"view token on the API", api, "/api/status", bearer("view-token"), 403, ""},
		{"view token, a page", h, "/", bearer("view-token"), 200, "ha"},
		{"unknown user", h, "/", basic("mallory", "pw-alice"), 401, ""},
	} {
		code, body := do(tc.handler, tc.path, "192.0.2.1:1234", tc.set)
		if code != tc.code || (tc.body != "" && body != tc.body) {
			t.Errorf("%s: %d %q, want %d %q", tc.name, code, body, tc.code, tc.body)
		}
	}
	// Ten failures from one address: that address is refused, others not.
	for i := 0; i < maxFailures; i++ {
		do(h, "/", "192.0.2.9:1", bearer("wrong"))
	}
	if code, _ := do(h, "/", "192.0.2.9:1", bearer("admin-token")); code != http.StatusTooManyRequests {
		t.Errorf("after %d failures: %d, want 429 even with a good token", maxFailures, code)
	}
	if code, _ := do(h, "/", "192.0.2.10:1", bearer("admin-token")); code != 200 {
		t.Errorf("another address after the failures: %d, want 200", code)
	}
	a.now = func() time.Time { return time.Now().Add(failureWindow + time.Second) }
	if code, _ := do(h, "/", "192.0.2.9:1", bearer("admin-token")); code != 200 {
		t.Errorf("after the window: %d, want 200", code)
	}
}
