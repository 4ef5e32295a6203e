package sdk

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
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
	// Ten failures from one client (an IPv4 address, an IPv6 /64): that
	// client is refused new password checks and wrong credentials for the
	// rest of the window; other clients are not. Valid tokens, and
	// passwords already proved, still get in: they cannot be guessed, and
	// refusing them would let anyone behind the same address (a reverse
	// proxy's clients) lock out everyone.
	do(h, "/", "192.0.2.9:1", basic("alice", "pw-alice")) // proved before the attack
	for _, attacker := range []string{"192.0.2.9:1", "[2001:db8:1:2::1]:1"} {
		for range maxFailures {
			do(h, "/", attacker, bearer("wrong-token-guess"))
		}
	}
	for _, tc := range []struct {
		name   string
		remote string
		set    func(*http.Request)
		code   int
	}{
		{"blocked: a wrong token", "192.0.2.9:1", bearer("wrong"), 429},
		{"blocked: no credential", "192.0.2.9:1", nil, 429},
		{"blocked: a password not yet proved", "192.0.2.9:1", basic("bob", "guess"), 429},
		{"blocked: a valid token", "192.0.2.9:1", bearer("admin-token"), 200},
		{"blocked: a password proved before", "192.0.2.9:1", basic("alice", "pw-alice"), 200},
		{"blocked /64: another address in it", "[2001:db8:1:2::ffff]:1", bearer("wrong"), 429},
		{"another /64", "[2001:db8:1:3::1]:1", bearer("wrong"), 401},
		{"another address", "192.0.2.10:1", bearer("admin-token"), 200},
	} {
		if code, _ := do(h, "/", tc.remote, tc.set); code != tc.code {
			t.Errorf("after %d failures, %s: %d, want %d", maxFailures, tc.name, code, tc.code)
		}
	}
	a.now = func() time.Time { return time.Now().Add(failureWindow + time.Second) }
	if code, _ := do(h, "/", "192.0.2.9:1", bearer("wrong")); code != 401 {
		t.Errorf("after the window, a wrong token: %d, want 401", code)
	}
}

// TestFailureTableBounded: a botnet failing from more addresses than are
// tracked neither grows the table without end nor unblocks a client that
// is blocked now.
func TestFailureTableBounded(t *testing.T) {
	a := NewAuthenticator(Security{AuthRequired: true}, nil)
	start := time.Now()
	clock := start
	a.now = func() time.Time { return clock }
	for range maxFailures {
		a.fail("192.0.2.1", Credential{Kind: "bearer"})
	}
	for i := range 2 * maxClientsTracked {
		clock = start.Add(time.Duration(i+1) * time.Millisecond)
		a.fail(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), Credential{Kind: "bearer"})
	}
	if len(a.failures) > maxClientsTracked {
		t.Errorf("%d clients tracked, want at most %d", len(a.failures), maxClientsTracked)
	}
	if !a.blocked("192.0.2.1") {
		t.Errorf("the blocked client was forgotten to make room")
	}
}

// TestCORS: which pages may read responses, and that a preflight is
// answered by the guard, without a credential and without reaching the
// handler (which may say more than a preflight should: WHEP's OPTIONS
// lists ICE servers with their credentials).
func TestCORS(t *testing.T) {
	const dash, evil = "https://dash.example.net", "https://evil.example"
	token := func(r *http.Request) { r.Header.Set("Authorization", "Bearer view-token") }
	preflight := func(r *http.Request) { r.Header.Set("Access-Control-Request-Method", "POST") }
	for _, tc := range []struct {
		name        string
		allow       []string
		method      string
		origin      string
		set         func(*http.Request)
		code        int
		allowOrigin string
		credentials bool
	}{
		{"preflight, a listed origin", []string{dash}, "OPTIONS", dash, preflight, 204, dash, true},
		{"preflight, another origin", []string{dash}, "OPTIONS", evil, preflight, 204, "", false},
		{"preflight, *", []string{"*"}, "OPTIONS", evil, preflight, 204, "*", false},
		{"preflight, a listed origin beside *", []string{"*", dash}, "OPTIONS", dash, preflight, 204, dash, true},
		{"GET, a listed origin", []string{dash}, "GET", dash, token, 200, dash, true},
		{"GET, another origin", []string{dash}, "GET", evil, token, 200, "", false},
		{"GET, * (never with the saved login)", []string{"*"}, "GET", evil, token, 200, "*", false},
		{"GET, no credential", []string{"*"}, "GET", evil, nil, 401, "*", false},
		{"plain OPTIONS needs a credential", []string{dash}, "OPTIONS", dash, nil, 401, dash, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := NewAuthenticator(Security{AuthRequired: true, AllowOrigins: tc.allow,
				Tokens: []Token{{Name: "ha", SHA256: sha256.Sum256([]byte("view-token")), Scope: ScopeView}}}, nil)
			h := a.Guard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("handler")) }), nil, false)
			r := httptest.NewRequest(tc.method, "/cameras/front/whep", nil)
			r.Header.Set("Origin", tc.origin)
			if tc.set != nil {
				tc.set(r)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			hd := w.Result().Header
			if w.Code != tc.code || hd.Get("Access-Control-Allow-Origin") != tc.allowOrigin ||
				(hd.Get("Access-Control-Allow-Credentials") == "true") != tc.credentials {
				t.Fatalf("%d, Allow-Origin %q, Allow-Credentials %q; want %d, %q, %v",
					w.Code, hd.Get("Access-Control-Allow-Origin"), hd.Get("Access-Control-Allow-Credentials"), tc.code, tc.allowOrigin, tc.credentials)
			}
			if preflight := r.Header.Get("Access-Control-Request-Method") != ""; preflight {
				if w.Body.Len() != 0 {
					t.Errorf("the preflight reached the handler: %q", w.Body.String())
				}
				if tc.allowOrigin != "" && !strings.Contains(hd.Get("Access-Control-Allow-Headers"), "Authorization") {
					t.Errorf("Allow-Headers %q, want Authorization named", hd.Get("Access-Control-Allow-Headers"))
				}
			}
		})
	}
}
