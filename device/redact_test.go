package device

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestRedactURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"http://cam.local/capture", "http://cam.local/capture"},
		{"http://admin:hunter2@cam/capture", "http://admin:***@cam/capture"},
		{"http://admin@cam/capture", "http://admin@cam/capture"}, // a user name alone is no secret
		{"http://cam/stream?token=s3cret&fps=5", "http://cam/stream?token=***&fps=5"},
		{"http://cam/stream?fps=5&access_token=a&API_KEY=b&pass=c&auth=d&sig=e&x=1", "http://cam/stream?fps=5&access_token=***&API_KEY=***&pass=***&auth=***&sig=***&x=1"},
		{"http://cam/s?%74oken=escaped", "http://cam/s?%74oken=***"},
		{"http://cam/videostream.cgi?loginuse=admin&loginpas=Leaky42&pw=1&psw=2", "http://cam/videostream.cgi?loginuse=admin&loginpas=***&pw=***&psw=***"},
		{"http://u:p%40ss@cam:81/stream?password=x#frag", "http://u:***@cam:81/stream?password=***"},
		{"rtsp://u:pw@10.0.0.2:554/live", "rtsp://u:***@10.0.0.2:554/live"},
		// url.Parse refuses these; what could be a secret goes anyway.
		{"http://u:pw@cam:bad/x?token=t", "http://***@cam:bad/x?***"},
		{"http://u:p/w@cam/x", "http://***@cam/x"}, // the password has a "/"
		{"http://u:pw@cam%zz/x", "http://***@cam%zz/x"},
	} {
		if got := RedactURL(tc.in); got != tc.want {
			t.Errorf("RedactURL(%q)\n got %q\nwant %q", tc.in, got, tc.want)
		}
	}
}

// net/http's errors keep a URL's query; redactErr removes its secrets and
// keeps the cause for errors.Is.
func TestRedactErr(t *testing.T) {
	inner := &url.Error{Op: "Get", URL: "http://u:***@cam/x?token=s3cret", Err: io.EOF}
	for _, err := range []error{inner, fmt.Errorf("probe: %w", inner)} {
		got := redactErr(err)
		if strings.Contains(got.Error(), "s3cret") || !strings.Contains(got.Error(), "token=***") {
			t.Errorf("redactErr(%q) = %q", err, got)
		}
		if !errors.Is(got, io.EOF) {
			t.Errorf("redactErr(%q) lost its cause", err)
		}
	}
}

// No secret from a camera's URL or token appears in anything the device
// package says about it: error texts, reasons, log lines; whatever the
// device does.
func TestNoSecretsInErrors(t *testing.T) {
	const password, query, token = "hunter2pw", "s3cretq", "tok-abcdef"
	closed := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln.Close()
		return ln.Addr().String()
	}()
	for _, tc := range []struct {
		name    string
		mode    string
		handler http.HandlerFunc // nil: nothing listens
	}{
		{"refused", "capture", nil},
		{"refused stream", "stream", nil},
		{"401", "capture", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", 401) }},
		{"401 stream", "stream", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", 401) }},
		{"not a stream", "stream", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<html>")) }},
		{"bad frames", "capture", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte{0xFF, 0xD8, 1, 2, 3}) }},
		{"closes before answering", "capture", func(w http.ResponseWriter, r *http.Request) {
			c, _, _ := http.NewResponseController(w).Hijack()
			c.Close()
		}},
		{"redirect loop", "capture", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, r.URL.String(), http.StatusFound)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr := closed
			if tc.handler != nil {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				srv := &http.Server{Handler: tc.handler}
				go srv.Serve(ln)
				t.Cleanup(func() { srv.Close() })
				addr = ln.Addr().String()
			}
			base := "http://admin:" + password + "@" + addr
			var src Source
			if tc.mode == "stream" {
				m := NewMJPEG(base + "/stream?token=" + query + "&fps=5")
				m.Token = token
				src = m
			} else {
				c := NewCapture(base+"/capture?key="+query, 10)
				c.Token = token
				src = c
			}
			r := start(t, &Camera{Name: "c", Source: src, OfflineAfter: 100 * time.Millisecond, MinRetry: 20 * time.Millisecond})
			waitFor(t, 10*time.Second, "a failure", func() bool {
				st := r.cam.Stats()
				return st.LastError != "" && st.Placeholders > 0
			})
			st := r.cam.Stats()
			r.stop()
			for what, text := range map[string]string{"last error": st.LastError, "reason": st.Reason, "log": r.log.String()} {
				for _, secret := range []string{password, query, token} {
					if strings.Contains(text, secret) {
						t.Errorf("%s shows a secret: %s", what, text)
					}
				}
			}
			t.Logf("last error: %s\nreason: %s", st.LastError, st.Reason)
		})
	}
}

// Probing needs only host and port, and says nothing else.
func TestProbeTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			// The probe hangs up at once: a read sees the end.
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = c.Read(make([]byte, 1))
			c.Close()
		}
		accepted <- err
	}()
	ctx := context.Background()
	if err := NewCapture("http://u:pw@"+ln.Addr().String()+"/capture?token=x", 1).Probe(ctx); err != nil {
		t.Fatalf("probe of a listening device: %v", err)
	}
	if err := <-accepted; err != io.EOF {
		t.Fatalf("the probe's connection: read %v, want EOF (closed at once)", err)
	}
	ln.Close()
	err = NewMJPEG("http://u:pw@" + ln.Addr().String() + "/stream?token=secret").Probe(ctx)
	if err == nil || strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "pw") {
		t.Fatalf("probe of a closed port: %v", err)
	}
	if f := classify(err, false); !f.unreachable {
		t.Fatalf("a refused probe classifies as %+v", f)
	}
}
