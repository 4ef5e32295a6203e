package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

// bench is one run: a source, then each relay at each viewer count.
type bench struct {
	bin, go2rtc      string
	counts           []int
	window, warmup   time.Duration
	fps, frameBytes  int
	trickle          time.Duration
	repeat           int // runs of every measurement; the report has their medians
	frameSize        int // the frames' actual mean size
	direct           row
	rows             []row
	idle             idleCost
	bare             idleCost // a bare read of the source (bare.go)
	haveIdle, haveGo bool
}

// row is one measurement of a relay at a viewer count.
type row struct {
	relay     string
	viewers   int
	cpuPer    time.Duration // CPU per delivered frame
	p50, p99  float64       // ms
	minFPS    float64       // of the slowest viewer
	rss       int64         // bytes, the relay's processes
	perViewer int64         // bytes of RSS per viewer above the relay at rest
	viewerCPU time.Duration // the viewers' CPU (this process) per delivered frame
	delivered int
	unstamped int
	cpuRuns   []time.Duration // each run's CPU per frame, for the spread
}

// idleCost is a camera's cost with no viewer.
type idleCost struct {
	cpuPer time.Duration // per frame read from the source
	frames uint64
	window time.Duration
	cpu    time.Duration
	rss    int64
	runs   []time.Duration // each run's CPU per frame, for the spread
}

func (b *bench) run(ctx context.Context, w io.Writer) error {
	frames, err := makeFrames(30, 640, 480, b.frameBytes)
	if err != nil {
		return err
	}
	for _, f := range frames {
		b.frameSize += len(f)
	}
	b.frameSize /= len(frames)
	src, err := startSource(ctx, frames, b.fps, b.trickle)
	if err != nil {
		return err
	}
	defer src.Close()
	dir, err := os.MkdirTemp("", "camd-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	load0 := loadavg()

	progress := func(format string, args ...any) { fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...) }
	relays := []string{"camd"}
	if b.go2rtc != "" {
		relays = append(relays, "go2rtc")
	}
	// Every measurement is repeated, and camd's and go2rtc's take turns
	// at each viewer count, each on a fresh process: a shared machine's
	// noise (another guest, a busy host) then falls on both, and the
	// report's medians leave a bad window out.
	var directs []row
	var idles, bares []idleCost
	runs := map[string][]row{} // by relay and viewer count
	for rep := 1; rep <= b.repeat; rep++ {
		progress("run %d of %d: direct read of the source, 1 viewer", rep, b.repeat)
		d, err := b.measure(ctx, "direct", nil, src.url, 1, 0)
		if err != nil {
			return err
		}
		directs = append(directs, d)

		progress("run %d of %d: camd idle, %s", rep, b.repeat, b.window)
		idle, err := b.measureIdle(ctx, func() (*relay, error) { return startCamd(ctx, b.bin, dir, src.url) })
		if err != nil {
			return err
		}
		idles = append(idles, idle)

		progress("run %d of %d: bare read of the source, %s", rep, b.repeat, b.window)
		bare, err := b.measureIdle(ctx, func() (*relay, error) { return startBare(ctx, src.url) })
		if err != nil {
			return err
		}
		bares = append(bares, bare)

		for _, n := range b.counts {
			for _, name := range relays {
				progress("run %d of %d: %s, %d viewers", rep, b.repeat, name, n)
				var r *relay
				if name == "camd" {
					r, err = startCamd(ctx, b.bin, dir, src.url)
				} else {
					r, err = startGo2rtc(ctx, b.go2rtc, dir, src.url)
				}
				if err != nil {
					return err
				}
				rest := r.procs.rss()
				row, err := b.measure(ctx, name, r, r.streamURL, n, rest)
				r.stop()
				if err != nil {
					return err
				}
				key := fmt.Sprintf("%s/%d", name, n)
				runs[key] = append(runs[key], row)
			}
		}
	}
	b.direct = medianRow(directs)
	b.idle = medianIdle(idles)
	b.bare = medianIdle(bares)
	b.haveIdle = true
	for _, n := range b.counts {
		for _, name := range relays {
			b.rows = append(b.rows, medianRow(runs[fmt.Sprintf("%s/%d", name, n)]))
		}
	}
	b.haveGo = b.go2rtc != ""
	b.report(w, load0, loadavg())
	return nil
}

// measure runs n viewers on url and records for the window. r is the relay
// whose processes are measured (nil for a direct read).
func (b *bench) measure(ctx context.Context, name string, r *relay, url string, n int, restRSS int64) (row, error) {
	vctx, cancel := context.WithCancel(ctx)
	defer cancel()
	vs, err := newViewers(url)
	if err != nil {
		return row{}, err
	}
	defer func() { cancel(); vs.wg.Wait() }()
	for added := 0; added < n; added += 100 {
		if err := vs.add(vctx, min(100, n-added)); err != nil {
			return row{}, fmt.Errorf("%s, %d viewers: %w", name, n, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := vs.ready(ctx, 60*time.Second); err != nil {
		return row{}, fmt.Errorf("%s, %d viewers: %w", name, n, err)
	}
	time.Sleep(b.warmup)
	var cpu0 time.Duration
	if r != nil {
		cpu0 = r.procs.cpu()
	}
	self0 := selfCPU()
	t0 := time.Now()
	vs.record(true)
	select {
	case <-ctx.Done():
		return row{}, ctx.Err()
	case <-time.After(b.window):
	}
	vs.record(false)
	elapsed, self := time.Since(t0), selfCPU()-self0
	res := vs.result()
	out := row{relay: name, viewers: n, p50: res.percentile(50), p99: res.percentile(99),
		minFPS: float64(res.minFrames) / elapsed.Seconds(), delivered: res.frames, unstamped: res.bad}
	if r != nil {
		cpu := r.procs.cpu() - cpu0
		if res.frames > 0 {
			out.cpuPer = cpu / time.Duration(res.frames)
		}
		out.viewerCPU = self / time.Duration(max(1, res.frames))
		out.rss = r.procs.rss()
		out.perViewer = max(0, out.rss-restRSS) / int64(n)
	}
	vs.mu.Lock()
	errs := vs.errors
	vs.mu.Unlock()
	if len(errs) > 0 {
		return out, fmt.Errorf("%s, %d viewers: %d viewers failed, first: %w", name, n, len(errs), errs[0])
	}
	return out, nil
}

// measureIdle starts a relay nobody watches, records its CPU per frame
// read from the source, and stops it. A relay that does not count its
// frames (the bare reader) reads them at the source's pace.
func (b *bench) measureIdle(ctx context.Context, start func() (*relay, error)) (idleCost, error) {
	r, err := start()
	if err != nil {
		return idleCost{}, err
	}
	defer r.stop()
	frames := r.frames
	if frames == nil {
		t0 := time.Now()
		frames = func() (uint64, error) { return uint64(time.Since(t0).Seconds()*float64(b.fps) + 0.5), nil }
	}
	time.Sleep(b.warmup)
	f0, err := frames()
	if err != nil {
		return idleCost{}, err
	}
	cpu0, t0 := r.procs.cpu(), time.Now()
	select {
	case <-ctx.Done():
		return idleCost{}, ctx.Err()
	case <-time.After(b.window):
	}
	f1, err := frames()
	if err != nil {
		return idleCost{}, err
	}
	c := idleCost{frames: f1 - f0, window: time.Since(t0), cpu: r.procs.cpu() - cpu0, rss: r.procs.rss()}
	if c.frames == 0 {
		return c, fmt.Errorf("%s read no frame in %s", r.name, b.window)
	}
	c.cpuPer = c.cpu / time.Duration(c.frames)
	return c, nil
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

func machine() string {
	model, cores := "?", 0
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok && model == "?" {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
			}
			if strings.HasPrefix(line, "processor") {
				cores++
			}
		}
	}
	kernel := "?"
	if out, err := exec.Command("uname", "-r").Output(); err == nil {
		kernel = strings.TrimSpace(string(out))
	}
	return fmt.Sprintf("%s, %d cores, Linux %s, %s", model, cores, kernel, runtime.Version())
}

// median returns the median of xs (the lower middle of an even count).
func median[T int64 | float64 | time.Duration](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

// medianRow is the runs' medians, each figure on its own.
func medianRow(rs []row) row {
	out := rs[0]
	pick := func(f func(row) float64) float64 {
		xs := make([]float64, len(rs))
		for i, r := range rs {
			xs[i] = f(r)
		}
		return median(xs)
	}
	out.cpuPer = time.Duration(pick(func(r row) float64 { return float64(r.cpuPer) }))
	out.p50 = pick(func(r row) float64 { return r.p50 })
	out.p99 = pick(func(r row) float64 { return r.p99 })
	out.minFPS = pick(func(r row) float64 { return r.minFPS })
	out.rss = int64(pick(func(r row) float64 { return float64(r.rss) }))
	out.perViewer = int64(pick(func(r row) float64 { return float64(r.perViewer) }))
	out.viewerCPU = time.Duration(pick(func(r row) float64 { return float64(r.viewerCPU) }))
	for _, r := range rs {
		out.cpuRuns = append(out.cpuRuns, r.cpuPer)
	}
	return out
}

// medianIdle is the idle runs' median by CPU per frame.
func medianIdle(cs []idleCost) idleCost {
	s := slices.Clone(cs)
	slices.SortFunc(s, func(a, b idleCost) int { return int(a.cpuPer - b.cpuPer) })
	out := s[(len(s)-1)/2]
	for _, c := range cs {
		out.runs = append(out.runs, c.cpuPer)
	}
	return out
}
