// Package device is the daemon's side of a camera: it pulls JPEG frames from
// an ESP32 running camd's firmware (or the stock CameraWebServer), from any
// MJPEG URL, or from a built-in simulated camera, checks each frame, probes
// for a device that went away so frames resume as soon as it is back, and
// while a camera has no frames sends a placeholder picture saying why.
package device

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// RawFrame is a frame as a source delivers it, before it is checked.
type RawFrame struct {
	JPEG     []byte
	Captured time.Time
}

// Source delivers frames from one device.
type Source interface {
	// Stream connects to the device and calls emit for every frame until
	// ctx ends (it then returns ctx.Err()) or the connection fails.
	//
	// emit reports whether it kept the frame's JPEG. A source hands over
	// bytes nobody else holds; those emit did not keep it may reuse for a
	// later frame, so a camera whose frames nobody takes (no viewer, or a
	// plugin that copied them out at once) allocates nothing per frame.
	Stream(ctx context.Context, emit func(RawFrame) (kept bool)) error
}

// SourceConfig selects and configures a source. It mirrors
// cameras[].source in config.yaml.
type SourceConfig struct {
	Type      string // "sim", "esp32" or "mjpeg"
	URL       string // esp32: base URL of the board; mjpeg: the stream URL
	StreamURL string // esp32 with mode stream: overrides URL+"/stream" (CameraWebServer uses port 81)
	Mode      string // esp32: "capture" (default) or "stream"
	FPS       float64
	Width     int
	Height    int
	Quality   int
	// Token is sent as "Authorization: Bearer <token>" (the firmware's
	// CAMSERVER_TOKEN), never in the URL, so it stays out of logs.
	Token string
	// InsecureTLS accepts any HTTPS certificate the device shows (a
	// camera's self-signed one), as verify_ssl: false does in Home
	// Assistant.
	InsecureTLS bool
}

// New returns the source described by c.
func New(c SourceConfig) (Source, error) {
	switch c.Type {
	case "sim":
		return NewSim(c.Width, c.Height, c.FPS, c.Quality), nil
	case "esp32":
		switch c.Mode {
		case "", "capture":
			src := NewCapture(strings.TrimRight(c.URL, "/")+"/capture", c.FPS)
			src.Token = c.Token
			trustAny(src.client, c.InsecureTLS)
			return src, nil
		case "stream":
			u := c.StreamURL
			if u == "" {
				u = strings.TrimRight(c.URL, "/") + "/stream"
			}
			src := NewMJPEG(u)
			src.Token = c.Token
			src.Idle = deviceTimeout(c.FPS)
			trustAny(src.client, c.InsecureTLS)
			return src, nil
		}
		return nil, fmt.Errorf("unknown esp32 mode %q (want capture or stream)", c.Mode)
	case "mjpeg":
		src := NewMJPEG(c.URL)
		src.Token = c.Token
		src.Idle = deviceTimeout(c.FPS)
		src.FPS = c.FPS
		trustAny(src.client, c.InsecureTLS)
		return src, nil
	}
	return nil, fmt.Errorf("unknown source type %q (want sim, esp32 or mjpeg)", c.Type)
}

// trustAny has client accept any HTTPS certificate, when insecure.
func trustAny(client *http.Client, insecure bool) {
	if insecure {
		client.Transport.(*http.Transport).TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	}
}

// ParseSize reads "640x480".
func ParseSize(s string) (w, h int, err error) {
	a, b, ok := strings.Cut(strings.ToLower(strings.TrimSpace(s)), "x")
	if ok {
		w, err1 := strconv.Atoi(a)
		h, err2 := strconv.Atoi(b)
		if err1 == nil && err2 == nil && w >= 16 && h >= 16 && w <= 8192 && h <= 8192 {
			return w, h, nil
		}
	}
	return 0, 0, fmt.Errorf("invalid size %q (want WIDTHxHEIGHT, e.g. 640x480)", s)
}
