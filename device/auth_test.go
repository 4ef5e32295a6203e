package device

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The RFC examples: RFC 2617 section 3.5 (MD5, qop=auth) and RFC 7616
// section 3.9.1 (SHA-256 and MD5).
func TestDigestAnswer(t *testing.T) {
	for _, tc := range []struct {
		challenge, pass, cnonce, want string
	}{
		{`Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"`,
			"Circle Of Life", "0a4f113b", "6629fae49393a05397450978507c4ef1"},
		{`Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"`,
			"Circle of Life", "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"},
		{`Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=MD5, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"`,
			"Circle of Life", "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", "8ca523f5e9506fed4657c9700eebdbec"},
	} {
		c, ok := parseDigest([]string{`Basic realm="x"`, tc.challenge})
		if !ok {
			t.Fatalf("parseDigest(%s) failed", tc.challenge)
		}
		got := c.answer("Mufasa", tc.pass, "GET", "/dir/index.html", 1, tc.cnonce)
		if !strings.Contains(got, `response="`+tc.want+`"`) || !strings.Contains(got, "nc=00000001") || !strings.Contains(got, `opaque="`+c.opaque+`"`) {
			t.Errorf("%s\nanswer %s\nwant response %s", tc.challenge, got, tc.want)
		}
	}
	if _, ok := parseDigest([]string{`Digest realm="x", nonce="n", algorithm=SHA-512-256`}); ok {
		t.Error("a challenge in an algorithm we cannot answer was taken")
	}
}

// digestServer serves a JPEG at /snap to Digest (MD5, qop=auth) with
// user:pass, its nonce changing when told, and counts requests.
type digestServer struct {
	jpeg     []byte
	nonce    atomic.Value
	requests atomic.Int32
	refused  atomic.Int32
}

func (d *digestServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d.requests.Add(1)
	nonce := d.nonce.Load().(string)
	p := authParams(strings.TrimPrefix(r.Header.Get("Authorization"), "Digest "))
	h := func(s ...string) string { x := md5.Sum([]byte(strings.Join(s, ":"))); return hex.EncodeToString(x[:]) }
	want := h(h("user", "cam", "pass"), nonce, p["nc"], p["cnonce"], "auth", h(r.Method, r.URL.RequestURI()))
	if !strings.HasPrefix(r.Header.Get("Authorization"), "Digest ") || p["nonce"] != nonce || p["response"] != want || p["uri"] != r.URL.RequestURI() {
		stale := ""
		if p["nonce"] != "" && p["nonce"] != nonce {
			stale = ", stale=true"
		}
		d.refused.Add(1)
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Digest realm="cam", qop="auth", nonce=%q, opaque="o"%s`, nonce, stale))
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Type", "image/jpeg")
	w.Write(d.jpeg)
}

// A camera that wants Digest (Hikvision, Dahua, Axis): camd answers its
// challenge, then signs each poll from it (one request per frame), follows
// a new nonce, and reports a wrong password as refused, without asking
// twice per poll.
func TestDigestCamera(t *testing.T) {
	ds := &digestServer{jpeg: testJPEG(t)}
	ds.nonce.Store("n1")
	srv := httptest.NewServer(ds)
	defer srv.Close()
	get := func(c *Capture) error {
		_, _, err := c.get(context.Background(), nil)
		return err
	}
	c := NewCapture(strings.Replace(srv.URL, "http://", "http://user:pass@", 1)+"/snap?channel=1", 5)
	if err := get(c); err != nil {
		t.Fatalf("first frame: %v", err)
	}
	if n := ds.requests.Load(); n != 2 {
		t.Errorf("first frame took %d requests, want 2 (Basic, then the challenge's answer)", n)
	}
	for range 3 {
		if err := get(c); err != nil {
			t.Fatal(err)
		}
	}
	if n := ds.requests.Load(); n != 5 {
		t.Errorf("%d requests for 4 frames, want 5: signed from the challenge after the first", n)
	}
	ds.nonce.Store("n2") // the device's nonce expires
	if err := get(c); err != nil || ds.requests.Load() != 7 {
		t.Fatalf("after a new nonce: %v, %d requests (want 7)", err, ds.requests.Load())
	}

	bad := NewCapture(strings.Replace(srv.URL, "http://", "http://user:wrong@", 1)+"/snap", 5)
	for range 3 {
		err := get(bad)
		var se *StatusError
		if !errors.As(err, &se) || se.Code != 401 || strings.Contains(err.Error(), "wrong") {
			t.Fatalf("a wrong password: %v", err)
		}
	}
	// Basic, then the answer (refused); then one request per poll.
	if n := ds.requests.Load(); n != 7+2+1+1 {
		t.Errorf("%d requests, want %d: a wrong password is asked once per poll after the first", n, 7+2+1+1)
	}
}

// Credentials in the URL survive an absolute redirect to the same host
// (net/http drops a URL's userinfo there, but keeps the header).
func TestBasicAcrossRedirect(t *testing.T) {
	mux := http.NewServeMux()
	jpeg := testJPEG(t)
	var base string
	mux.HandleFunc("/old", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, base+"/snap", http.StatusFound) })
	mux.HandleFunc("/snap", func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "user" || p != "pass" {
			w.Header().Set("WWW-Authenticate", `Basic realm="cam"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "image/jpeg")
		w.Write(jpeg)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	base = srv.URL
	c := NewCapture(strings.Replace(srv.URL, "http://", "http://user:pass@", 1)+"/old", 5)
	if _, _, err := c.get(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
}

// A camera's snapshot URL (image/jpeg, not a stream) given as an mjpeg
// source is polled, as go2rtc does: frames keep coming, at the source's
// fps, through its Digest login.
func TestSnapshotURLIsPolled(t *testing.T) {
	ds := &digestServer{jpeg: testJPEG(t)}
	ds.nonce.Store("n1")
	srv := httptest.NewServer(ds)
	defer srv.Close()
	src, err := New(SourceConfig{Type: "mjpeg", URL: strings.Replace(srv.URL, "http://", "http://user:pass@", 1) + "/snapshot.jpg", FPS: 20})
	if err != nil {
		t.Fatal(err)
	}
	r := start(t, &Camera{Name: "ipcam", Source: src})
	waitFor(t, 20*time.Second, "five frames", func() bool {
		n := 0
		for _, f := range r.rec.snapshot() {
			if !f.Placeholder {
				n++
			}
		}
		return n >= 5
	})
	if st := r.cam.Stats(); st.State != StateLive || st.Dropped != 0 {
		t.Fatalf("a polled snapshot URL: %+v", st)
	}
}

// A camera with a self-signed HTTPS certificate: refused with a reason
// that says what to set, and read with verify_tls: false.
func TestSelfSignedCamera(t *testing.T) {
	jpeg := testJPEG(t)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/jpeg")
		w.Write(jpeg)
	}))
	defer srv.Close()
	for _, insecure := range []bool{false, true} {
		src, err := New(SourceConfig{Type: "esp32", Mode: "capture", URL: srv.URL, FPS: 5, InsecureTLS: insecure})
		if err != nil {
			t.Fatal(err)
		}
		f, _, err := src.(*Capture).get(context.Background(), nil)
		switch {
		case insecure && (err != nil || len(f.JPEG) != len(jpeg)):
			t.Fatalf("verify_tls: false: %v", err)
		case !insecure && (err == nil || !strings.Contains(plainWords(err, false), "verify_tls: false")):
			t.Fatalf("a self-signed certificate: err %v, reason %q", err, plainWords(err, false))
		}
	}
}

// The camera's login goes only where the request first went: a redirect
// to another port, or from https down to http, gets no Authorization.
func TestLoginStaysHome(t *testing.T) {
	var leaked atomic.Value
	leaked.Store("")
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaked.Store(r.Header.Get("Authorization"))
		w.WriteHeader(http.StatusNotFound)
	}))
	defer elsewhere.Close()
	home := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+"/capture", http.StatusFound)
	}))
	defer home.Close()
	src, err := New(SourceConfig{Type: "esp32", Mode: "capture", URL: strings.Replace(home.URL, "https://", "https://admin:s3cret@", 1), FPS: 5, InsecureTLS: true})
	if err != nil {
		t.Fatal(err)
	}
	src.(*Capture).get(context.Background(), nil)
	if got := leaked.Load().(string); got != "" {
		t.Fatalf("the redirect's target (another port, plain http) got Authorization %q", got)
	}
}
