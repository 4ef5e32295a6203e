package main

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// The go2rtc figures (dc1685e, this machine class), used for the
// targets when go2rtc is not measured in the same run.
var go2rtcPublished = map[int]struct {
	cpuPer time.Duration
	p99    float64
}{
	1:   {368 * time.Microsecond, 1.05},
	50:  {48 * time.Microsecond, 5.9},
	200: {44 * time.Microsecond, 15.1},
	500: {46 * time.Microsecond, 50.7},
}

func (b *bench) report(w io.Writer, load0, load1 string) {
	fmt.Fprintf(w, "camd benchmark: 640x480 MJPEG at %d fps, %.1f KB frames, %s windows\n\n", b.fps, float64(b.frameSize)/1000, b.window)
	fmt.Fprintf(w, "Machine: %s. Load average before %s, after %s. %s.\n\n", machine(), load0, load1, time.Now().UTC().Format("2006-01-02 15:04 MST"))

	fmt.Fprintf(w, "Each figure is the median of %d runs; camd and go2rtc took turns at each viewer count, each on a fresh process.\n\n", b.repeat)
	fmt.Fprintln(w, "| relay | viewers | CPU µs per delivered frame | each run's | p50 ms | p99 ms | slowest viewer fps | RSS MB | KB per viewer | viewers' CPU µs per frame |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	fmt.Fprintf(w, "| direct read | 1 | | | %.2f | %.2f | %.1f | | | |\n", b.direct.p50, b.direct.p99, b.direct.minFPS)
	for _, r := range b.rows {
		fmt.Fprintf(w, "| %s | %d | %.0f | %s | %.2f | %.2f | %.1f | %.1f | %.1f | %.0f |\n", r.relay, r.viewers,
			us(r.cpuPer), spread(r.cpuRuns, us, "%.0f"), r.p50, r.p99, r.minFPS, float64(r.rss)/1e6, float64(r.perViewer)/1024, us(r.viewerCPU))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "The viewers run in the benchmark's process on the same cores as the relay; their CPU (with the source's) is the last column, and a relay's latency includes their waiting for a core.")
	fmt.Fprintln(w)
	if b.haveIdle {
		frameTime := time.Second / time.Duration(b.fps)
		fmt.Fprintf(w, "Fixed cost of a camera with no viewer (camd + mjpeg plugin): %.3f ms of CPU per frame (%.2f %% of a core at %d fps; runs: %s ms), %d frames read in %s, RSS %.1f MB.\n\n",
			ms(b.idle.cpuPer), 100*float64(b.idle.cpuPer)/float64(frameTime), b.fps, spread(b.idle.runs, ms, "%.3f"), b.idle.frames, b.idle.window.Round(time.Millisecond), float64(b.idle.rss)/1e6)
		fmt.Fprintf(w, "A bare read of the same source (a Go loop reading the stream into one buffer with camd's raw reads: no parsing, no plugin; what the machine charges for the wake-ups and copies) took %.3f ms per frame in the same runs (runs: %s ms).\n\n",
			ms(b.bare.cpuPer), spread(b.bare.runs, ms, "%.3f"))
	}
	if one, ok := b.find("camd", 1); ok {
		fmt.Fprintf(w, "Plugin hop: camd's p99 with one viewer is %.2f ms, %+.2f ms against a direct read of the source (%.2f ms).\n\n", one.p99, one.p99-b.direct.p99, b.direct.p99)
	}

	check := targets(w)
	if b.haveIdle {
		check(ms(b.idle.cpuPer) <= 0.25, "fixed cost %.3f ms per frame (≤ 0.25; a bare read: %.3f)", ms(b.idle.cpuPer), ms(b.bare.cpuPer))
	}
	if one, ok := b.find("camd", 1); ok {
		check(one.p99-b.direct.p99 <= 0.5, "plugin hop %+.2f ms at p99 (≤ +0.5)", one.p99-b.direct.p99)
	}
	for _, n := range []int{500, 1000} {
		c, ok := b.find("camd", n)
		if !ok {
			continue
		}
		ref, src := b.go2rtcAt(n)
		if src != "" {
			check(float64(c.cpuPer) <= 0.6*float64(ref.cpuPer), "%d viewers: CPU per frame %.0f µs, %.2f× go2rtc's %.0f µs %s (≤ 0.6×)", n, us(c.cpuPer), float64(c.cpuPer)/float64(ref.cpuPer), us(ref.cpuPer), src)
			check(c.p99 <= 0.5*ref.p99, "%d viewers: p99 %.1f ms, %.2f× go2rtc's %.1f ms %s (≤ 0.5×)", n, c.p99, c.p99/ref.p99, ref.p99, src)
		}
		check(c.minFPS >= 29, "%d viewers: slowest viewer %.1f fps (≥ 29)", n, c.minFPS)
		check(c.perViewer <= 50<<10, "%d viewers: %.1f KB per viewer (≤ 50)", n, float64(c.perViewer)/1024)
	}
}

func (b *bench) find(relay string, n int) (row, bool) {
	for _, r := range b.rows {
		if r.relay == relay && r.viewers == n {
			return r, true
		}
	}
	return row{}, false
}

// go2rtcAt returns go2rtc's figures at n viewers: measured in this run, or
// the issue's, and where they come from; "" when there are none.
func (b *bench) go2rtcAt(n int) (row, string) {
	if r, ok := b.find("go2rtc", n); ok {
		return r, "(this run)"
	}
	if p, ok := go2rtcPublished[n]; ok {
		return row{cpuPer: p.cpuPer, p99: p.p99}, "(the issue's figure)"
	}
	return row{}, ""
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// spread lists each run's figure, e.g. "16 / 17 / 31".
func spread(ds []time.Duration, unit func(time.Duration) float64, format string) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = fmt.Sprintf(format, unit(d))
	}
	return strings.Join(parts, " / ")
}

// targets prints the heading of the targets' list and returns what
// prints one target, met or missed.
func targets(w io.Writer) func(ok bool, format string, args ...any) {
	fmt.Fprintln(w, "Targets (issue 13):")
	return func(ok bool, format string, args ...any) {
		mark := "MISS"
		if ok {
			mark = "ok  "
		}
		fmt.Fprintf(w, "- %s "+format+"\n", append([]any{mark}, args...)...)
	}
}
