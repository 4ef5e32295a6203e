package device

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
)

// Which failures mean "probe until it is back" and which "back off", and
// what each says in plain words.
func TestClassify(t *testing.T) {
	opErr := func(op string, errno syscall.Errno) error {
		return &net.OpError{Op: op, Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 9), Port: 80}, Err: os.NewSyscallError("connect", errno)}
	}
	urlErr := func(err error) error { return &url.Error{Op: "Get", URL: "http://10.0.0.9/capture", Err: err} }
	status := func(code int, s string) error {
		return answered(&StatusError{URL: "http://10.0.0.9/capture", Code: code, Status: s})
	}
	type timeoutErr struct{ net.Error }
	for _, tc := range []struct {
		name        string
		err         error
		gotFrames   bool
		unreachable bool
		reason      string
	}{
		{"refused", urlErr(opErr("dial", syscall.ECONNREFUSED)), false, true, "nothing accepts connections at 10.0.0.9:80"},
		{"no route", urlErr(opErr("dial", syscall.EHOSTUNREACH)), false, true, "no route to 10.0.0.9:80"},
		{"network down", urlErr(opErr("dial", syscall.ENETUNREACH)), false, true, "the network to 10.0.0.9:80 is down"},
		{"dial timeout", urlErr(&net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 9), Port: 80}, Err: context.DeadlineExceeded}), false, true, "10.0.0.9:80 does not answer"},
		{"name unknown", urlErr(&net.OpError{Op: "dial", Err: &net.DNSError{Name: "cam.local", Err: "no such host", IsNotFound: true}}), false, true, "name cam.local cannot be resolved"},
		{"closed before answering", urlErr(io.EOF), false, true, "closed the connection without answering"},
		{"reset before answering", urlErr(opErr("read", syscall.ECONNRESET)), false, true, "closed the connection without answering"},
		{"no answer in time", urlErr(context.DeadlineExceeded), false, true, "did not answer in time"},
		{"stream broke after frames", answered(fmt.Errorf("%w: part body: %w", ErrBadMultipart, io.ErrUnexpectedEOF)), true, true, "the connection to the device broke"},
		{"stream ended after frames", answered(fmt.Errorf("stream ended: %w", io.EOF)), true, true, "the connection to the device broke"},
		{"stream stalled after frames", answered(fmt.Errorf("GET x: %w", errStalled)), true, true, "stopped sending frames"},
		{"source returned nil after frames", nil, true, true, "the connection to the device broke"},
		// The device answered, and did not deliver: back off.
		{"stream ended at once", answered(fmt.Errorf("stream ended: %w", io.EOF)), false, false, "the connection to the device broke"},
		{"stream stalled before a frame", answered(fmt.Errorf("GET x: %w", errStalled)), false, false, "stopped sending frames"},
		{"401", status(401, "401 Unauthorized"), false, false, "refused access (HTTP 401 Unauthorized): check the user and password in url, or the camera's token"},
		{"403 after frames", status(403, "403 Forbidden"), true, false, "refused access (HTTP 403 Forbidden)"},
		{"404", status(404, "404 Not Found"), false, false, "no such page (HTTP 404 Not Found): check url, stream_url and mode"},
		{"503", status(503, "503 Service Unavailable"), false, false, "busy (HTTP 503 Service Unavailable)"},
		{"500", status(500, "500 Internal Server Error"), false, false, "answered with an error (HTTP 500 Internal Server Error)"},
		{"not a stream", answered(fmt.Errorf("GET x: %w (Content-Type \"text/html\")", errNotMJPEG)), false, false, "not with an MJPEG stream"},
		{"oversized part", answered(fmt.Errorf("%w: part of 99 bytes", ErrFrameTooLarge)), true, false, "frame over the size limit"},
		{"broken multipart", answered(fmt.Errorf("%w: more than 32 part headers", ErrBadMultipart)), true, false, "broken MJPEG stream"},
		{"invalid url", fmt.Errorf("GET x: %w", errInvalidURL), false, false, "url is invalid"},
		{"tls", urlErr(errors.New("tls: failed to verify certificate")), false, false, "tls: failed to verify certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := classify(tc.err, tc.gotFrames)
			if f.unreachable != tc.unreachable || !strings.Contains(f.reason, tc.reason) {
				t.Errorf("classify(%v, %v) = %+v; want unreachable %v, reason containing %q", tc.err, tc.gotFrames, f, tc.unreachable, tc.reason)
			}
			if want := map[bool]State{true: StateOffline, false: StateFailing}[tc.unreachable]; stateOf(f) != want {
				t.Errorf("state %s, want %s", stateOf(f), want)
			}
		})
	}
}

func TestDropReasons(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want DropReason
	}{
		{ErrEmptyFrame, DropEmpty},
		{ErrNotJPEG, DropNotJPEG},
		{ErrTruncatedJPEG, DropTruncated},
		{fmt.Errorf("%w: segment 0xdb at offset 20 overruns the frame", ErrCorruptJPEG), DropCorrupt},
		{fmt.Errorf("%w: 20000000 bytes, limit 16777216", ErrFrameTooLarge), DropTooLarge},
		{fmt.Errorf("%w: bad part header line", ErrBadMultipart), DropCorrupt},
	} {
		if got := dropReason(tc.err); got != tc.want {
			t.Errorf("dropReason(%v) = %s, want %s", tc.err, got, tc.want)
		}
	}
	var d DropCounts
	d[DropCorrupt], d[DropTooLarge] = 3, 1
	b, err := json.Marshal(struct{ Drops DropCounts }{d})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"Drops":{"empty":0,"not_jpeg":0,"truncated":0,"corrupt":3,"too_large":1}}`; string(b) != want {
		t.Errorf("JSON %s, want %s", b, want)
	}
	if d.Total() != 4 || d.String() != "3 corrupt, 1 too_large" {
		t.Errorf("Total %d, String %q", d.Total(), d.String())
	}
	for r := DropReason(0); r < numDropReasons; r++ {
		if s := r.String(); s == "" || strings.ContainsAny(s, " -.") || strings.ToLower(s) != s {
			t.Errorf("reason %d is named %q: not a Prometheus-friendly label value", r, s)
		}
	}
}
