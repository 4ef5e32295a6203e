package redact

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	r := New("s3cr3t-token", "hunter22")
	for _, tc := range []struct{ in, want string }{
		{"GET http://admin:hunter22@cam/capture: 401", "GET http://admin:***@cam/capture: 401"},
		{"GET http://admin:other@cam/x", "GET http://admin:***@cam/x"},
		{"http://cam/capture?token=abc&fps=3", "http://cam/capture?token=***&fps=3"},
		{"http://cam/x?access_token=abc", "http://cam/x?access_token=***"},
		{"url http://cam/x?a=1&password=p&b=2", "url http://cam/x?a=1&password=***&b=2"},
		{"http://cam/x?API_KEY=zz", "http://cam/x?API_KEY=***"},
		// Cheap P2P cameras' names for a password.
		{"GET http://cam/videostream.cgi?loginuse=admin&loginpas=Leaky42: EOF", "GET http://cam/videostream.cgi?loginuse=admin&loginpas=*** EOF"},
		{"http://cam/snap.cgi?user=a&pwd=b&psw=c&pw=d&fps=2", "http://cam/snap.cgi?user=a&pwd=***&psw=***&pw=***&fps=2"},
		{"Authorization: Bearer abc.def", "Authorization: Bearer ***"},
		{"Authorization: Basic YWxpY2U6cA==", "Authorization: Basic ***"},
		{"the token is s3cr3t-token, really", "the token is ***, really"},
		{"no secrets at http://cam:8080/stream", "no secrets at http://cam:8080/stream"},
		{"user@example.com wrote key points", "user@example.com wrote key points"},
		{"dial tcp 10.0.0.1:80: connect: connection refused", "dial tcp 10.0.0.1:80: connect: connection refused"},
	} {
		if got := r.String(tc.in); got != tc.want {
			t.Errorf("String(%q)\n got %q\nwant %q", tc.in, got, tc.want)
		}
	}
}

func TestJSON(t *testing.T) {
	r := New("Known-Secret-1")
	for _, tc := range []struct{ in, want string }{
		{`{"whip":{"back":{"url":"http://pub:PubPassw0rd@relay/whip?access_token=Q&fps=2","up":true}},"n":12345678901234567890}`,
			`{"n":12345678901234567890,"whip":{"back":{"up":true,"url":"http://pub:***@relay/whip?access_token=***\u0026fps=2"}}}`},
		{`["Known-Secret-1 in a list", 1.50, null]`, `["*** in a list",1.50,null]`},
		{`{"Known-Secret-1": "keys stay"}`, `{"Known-Secret-1":"keys stay"}`},
		{`not json`, ``},
	} {
		if got := string(r.JSON([]byte(tc.in))); got != tc.want {
			t.Errorf("JSON(%s)\n got %s\nwant %s", tc.in, got, tc.want)
		}
	}
}

func TestSecretsOfURL(t *testing.T) {
	got := SecretsOfURL("http://u:pw1@cam/x?token=t1&fps=2&key=k1&loginuse=admin&loginpas=lp1")
	want := map[string]bool{"pw1": true, "t1": true, "k1": true, "lp1": true}
	if len(got) != len(want) {
		t.Fatalf("got %q", got)
	}
	for _, s := range got {
		if !want[s] {
			t.Fatalf("unexpected secret %q in %q", s, got)
		}
	}
}

func TestHandler(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(Handler(slog.NewTextHandler(&buf, nil), New("tok-123456")))
	log = log.With("url", "http://a:pw@cam/")
	log.Warn("GET http://cam/capture?token=tok-123456 failed", "err", errors.New("401 for tok-123456"),
		slog.Group("g", "u", "http://x/?password=zz"), "n", 3)
	out := buf.String()
	for _, leak := range []string{"tok-123456", ":pw@", "password=zz"} {
		if strings.Contains(out, leak) {
			t.Errorf("log leaks %q: %s", leak, out)
		}
	}
	if !strings.Contains(out, "n=3") || !strings.Contains(out, "level=WARN") {
		t.Errorf("log lost ordinary attributes: %s", out)
	}
}

func FuzzString(f *testing.F) {
	f.Add("http://u:p@h/?token=x", "p")
	f.Fuzz(func(t *testing.T, s, secret string) {
		r := New(secret)
		out := r.String(s)
		// A known secret never survives: masks only ever replace text, so
		// they cannot join two halves of a secret that has no '*' itself.
		if len(secret) >= 4 && !strings.Contains(secret, "*") && strings.Contains(out, secret) {
			t.Fatalf("secret %q survived in %q", secret, out)
		}
	})
}
