package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// viewers is a crowd of MJPEG clients on one URL. Each parses parts by
// Content-Length and, while recording, notes every frame's latency: from the
// source's stamp to the frame's last byte here.
type viewers struct {
	url       string
	client    *http.Client
	recording atomic.Bool
	wg        sync.WaitGroup

	mu     sync.Mutex
	each   []*viewer
	errors []error
}

type viewer struct {
	first atomic.Bool // got a frame

	mu      sync.Mutex // uncontended: the viewer's goroutine and the reports
	frames  int        // recorded frames
	latency []int32    // recorded latencies, µs
	bad     int        // recorded frames without a stamp
}

// viewerBuffer is the viewers' read buffers' size (see newViewers).
const viewerBuffer = 4 << 10

func newViewers(url string) *viewers {
	// Small read buffers: a frame's body then goes from the socket into
	// the viewer's buffer in one copy (bufio reads a large read straight
	// through when empty). With 64 KB buffers each frame was copied
	// twice more, and the viewers, on the same cores as the relay, took
	// twice the relay's CPU at 500 viewers and set its latency.
	tr := &http.Transport{DisableCompression: true, MaxConnsPerHost: 0, MaxIdleConnsPerHost: -1, ReadBufferSize: viewerBuffer}
	return &viewers{url: url, client: &http.Client{Transport: tr}}
}

// add starts n more viewers; they run until ctx ends.
func (vs *viewers) add(ctx context.Context, n int) {
	for range n {
		v := &viewer{}
		vs.mu.Lock()
		vs.each = append(vs.each, v)
		vs.mu.Unlock()
		vs.wg.Add(1)
		go func() {
			defer vs.wg.Done()
			if err := vs.run(ctx, v); err != nil && ctx.Err() == nil {
				vs.mu.Lock()
				vs.errors = append(vs.errors, err)
				vs.mu.Unlock()
			}
		}()
	}
}

// ready waits until every viewer has had a frame.
func (vs *viewers) ready(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		vs.mu.Lock()
		waiting, errs := 0, vs.errors
		for _, v := range vs.each {
			if !v.first.Load() {
				waiting++
			}
		}
		vs.mu.Unlock()
		if len(errs) > 0 {
			return fmt.Errorf("%d viewers failed, first: %w", len(errs), errs[0])
		}
		if waiting == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d viewers had no frame after %s", waiting, len(vs.each), timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (vs *viewers) run(ctx context.Context, v *viewer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, vs.url, nil)
	if err != nil {
		return err
	}
	resp, err := vs.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", vs.url, resp.Status)
	}
	br := bufio.NewReaderSize(resp.Body, viewerBuffer)
	var body []byte
	for {
		n, err := nextPartLength(br)
		if err != nil {
			return err
		}
		if cap(body) < n {
			body = make([]byte, n)
		}
		body = body[:n]
		if _, err := io.ReadFull(br, body); err != nil {
			return err
		}
		now := time.Now().UnixNano()
		v.first.Store(true)
		if !vs.recording.Load() {
			continue
		}
		stamp, ok := stampOf(body)
		v.mu.Lock()
		if ok {
			v.frames++
			v.latency = append(v.latency, int32((now-stamp)/1e3))
		} else {
			v.bad++
		}
		v.mu.Unlock()
	}
}

// nextPartLength reads up to the end of the next part's headers and returns
// its Content-Length. Delimiter lines and blank lines before the headers are
// skipped, which covers the framings relays use.
func nextPartLength(br *bufio.Reader) (int, error) {
	length, inHeaders := -1, false
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0 && inHeaders:
			if length < 0 {
				return 0, errors.New("part without Content-Length")
			}
			return length, nil
		case len(line) == 0 || bytes.HasPrefix(line, []byte("--")):
		default:
			inHeaders = true
			if k, val, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(bytes.TrimSpace(k), []byte("Content-Length")) {
				n, err := strconv.Atoi(string(bytes.TrimSpace(val)))
				if err != nil {
					return 0, fmt.Errorf("bad Content-Length %q", val)
				}
				length = n
			}
		}
	}
}

// record starts or stops recording; a start clears what was recorded.
func (vs *viewers) record(on bool) {
	if on {
		vs.mu.Lock()
		for _, v := range vs.each {
			v.mu.Lock()
			v.frames, v.latency, v.bad = 0, v.latency[:0], 0
			v.mu.Unlock()
		}
		vs.mu.Unlock()
	}
	vs.recording.Store(on)
}

// result is what the viewers recorded.
type result struct {
	viewers   int
	frames    int     // delivered, in total
	minFrames int     // of the slowest viewer
	bad       int     // frames without the stamp
	latency   []int32 // µs, sorted
}

func (vs *viewers) result() result {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	r := result{viewers: len(vs.each), minFrames: -1}
	for _, v := range vs.each {
		v.mu.Lock()
		r.frames += v.frames
		r.bad += v.bad
		if r.minFrames < 0 || v.frames < r.minFrames {
			r.minFrames = v.frames
		}
		r.latency = append(r.latency, v.latency...)
		v.mu.Unlock()
	}
	slices.Sort(r.latency)
	return r
}

// percentile returns the p-th percentile of the latencies, in ms.
func (r result) percentile(p float64) float64 {
	if len(r.latency) == 0 {
		return 0
	}
	i := min(int(p/100*float64(len(r.latency))), len(r.latency)-1)
	return float64(r.latency[i]) / 1e3
}
