package device

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strings"
	"time"
)

// MaxFrameBytes is the largest frame a source accepts. A 4K JPEG is about
// 3 MB; anything near this is a broken device, not a picture.
const MaxFrameBytes = 16 << 20

// newClient returns an HTTP client that uses at most one connection: an
// ESP32 has 8 sockets in all, shared with everything else it does.
func newClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 15 * time.Second}).DialContext,
		MaxConnsPerHost:       1,
		MaxIdleConnsPerHost:   1,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: 10 * time.Second,
		DisableCompression:    true,
	}}
}

// Capture pulls single JPEGs from a raw JPEG endpoint (the firmware's
// /capture) over one keep-alive connection.
type Capture struct {
	Token string // sent as a bearer token when set

	url    string
	fps    float64 // 0: as fast as the device answers
	client *http.Client
}

// NewCapture returns a source polling url at fps.
func NewCapture(url string, fps float64) *Capture {
	return &Capture{url: url, fps: fps, client: newClient()}
}

// Stream implements Source.
func (c *Capture) Stream(ctx context.Context, emit func(RawFrame)) error {
	// A failed connection is not reused for the next attempt.
	defer c.client.CloseIdleConnections()
	var tick <-chan time.Time
	if c.fps > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / c.fps))
		defer t.Stop()
		tick = t.C
	}
	lastSeq := ""
	for {
		f, seq, err := c.get(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		// The firmware numbers frames; the same number twice means the
		// board had nothing newer (we polled faster than it captures).
		if seq == "" || seq != lastSeq {
			emit(f)
		}
		lastSeq = seq
		if tick != nil {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-tick:
			}
		} else if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

func (c *Capture) get(ctx context.Context) (RawFrame, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return RawFrame{}, "", err
	}
	setToken(req, c.Token)
	resp, err := c.client.Do(req)
	if err != nil {
		return RawFrame{}, "", err
	}
	defer resp.Body.Close()
	captured := time.Now()
	if resp.StatusCode != http.StatusOK {
		// Drain a short error body so the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return RawFrame{}, "", fmt.Errorf("GET %s: %s", c.url, resp.Status)
	}
	if resp.ContentLength > MaxFrameBytes {
		return RawFrame{}, "", fmt.Errorf("GET %s: %w: %d bytes", c.url, ErrFrameTooLarge, resp.ContentLength)
	}
	var body []byte
	if resp.ContentLength >= 0 {
		body = make([]byte, resp.ContentLength)
		_, err = io.ReadFull(resp.Body, body)
	} else {
		body, err = io.ReadAll(io.LimitReader(resp.Body, MaxFrameBytes+1))
	}
	if err != nil {
		return RawFrame{}, "", fmt.Errorf("GET %s: reading body: %w", c.url, err)
	}
	return RawFrame{JPEG: body, Captured: captured}, resp.Header.Get("X-Frame-Seq"), nil
}

// MJPEG reads a multipart/x-mixed-replace stream: the firmware's /stream,
// CameraWebServer's :81/stream, ESPHome, mjpg-streamer, go2rtc or an IP
// camera.
type MJPEG struct {
	Token string // sent as a bearer token when set

	url    string
	client *http.Client
}

// NewMJPEG returns a source reading the MJPEG stream at url.
func NewMJPEG(url string) *MJPEG { return &MJPEG{url: url, client: newClient()} }

// errStalled is returned when a stream sends nothing for streamIdle.
var errStalled = errors.New("stream stalled")

// streamIdle is how long a stream may send nothing before it is dropped
// and reconnected.
const streamIdle = 10 * time.Second

// Stream implements Source.
func (m *MJPEG) Stream(ctx context.Context, emit func(RawFrame)) error {
	defer m.client.CloseIdleConnections()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.url, nil)
	if err != nil {
		return err
	}
	setToken(req, m.Token)
	resp, err := m.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", m.url, resp.Status)
	}
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || !strings.HasPrefix(mt, "multipart/") || params["boundary"] == "" {
		return fmt.Errorf("GET %s: not an MJPEG stream (Content-Type %q)", m.url, resp.Header.Get("Content-Type"))
	}

	// A watchdog ends the request if no part arrives for streamIdle: a
	// board that lost Wi-Fi mid-frame leaves the TCP connection open.
	alive := make(chan struct{}, 1)
	go func() {
		t := time.NewTimer(streamIdle)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-alive:
				t.Reset(streamIdle)
			case <-t.C:
				cancel(errStalled)
				return
			}
		}
	}()

	r := NewMultipartReader(resp.Body, params["boundary"], MaxFrameBytes)
	for {
		_, body, err := r.NextPart()
		if err != nil {
			if cause := context.Cause(ctx); cause != nil {
				if errors.Is(cause, errStalled) {
					return fmt.Errorf("GET %s: %w", m.url, cause)
				}
				return ctx.Err()
			}
			if err == io.EOF {
				return fmt.Errorf("GET %s: stream ended", m.url)
			}
			return fmt.Errorf("GET %s: %w", m.url, err)
		}
		select {
		case alive <- struct{}{}:
		default:
		}
		emit(RawFrame{JPEG: body, Captured: time.Now()})
	}
}

// setToken authenticates req the way camd's firmware accepts it: a header,
// never the URL (URLs end up in logs and error texts).
func setToken(req *http.Request, token string) {
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
}
