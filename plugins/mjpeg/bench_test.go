package main

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/camd/camd/device"
	"github.com/camd/camd/sdk"
	"github.com/camd/camd/sdk/sdktest"
)

// benchViewersEnv passes BenchmarkViewers' viewer count to its server.
const benchViewersEnv = "MJPEG_BENCH_VIEWERS"

// benchProfileEnv, when set, is a file for a CPU profile of the
// benchmark's server, from start to end:
//
//	MJPEG_BENCH_CPUPROFILE=/tmp/mjpeg.pprof go test -run '^$' -bench 'Viewers/viewers=500$' -benchtime 1x ./plugins/mjpeg
//	go tool pprof -top /tmp/mjpeg.pprof
const benchProfileEnv = "MJPEG_BENCH_CPUPROFILE"

// benchFPS is the rate of the benchmark's camera.
const benchFPS = 30

// BenchmarkViewers serves one 640x480 camera at 30 fps (the sim's
// frames, ~37 KB) to 1 to 1,000 viewers. The plugin and the source that
// feeds it over gRPC, as camd would, run in a process of their own, so its
// CPU and memory are measured apart from the viewers, which are lean
// clients on raw TCP in this process. It reports per viewer count:
//
//   - µs/frame: the server process's CPU (its threads' run time) per
//     frame delivered to a viewer, over a 4 s window; µs/part the same
//     above what the camera alone costs, camera-µs (the source's gRPC hop
//     and HandleFrame per frame, measured with no viewer after the
//     window; camd's own frame path is cheaper);
//   - p50-ms, p99-ms: from the frame's X-Timestamp (stamped just before
//     the source sends it) to its last byte read by the viewer;
//   - min-fps: the slowest viewer's frame rate (the camera's is 30);
//   - writes/part: write system calls the server made (syscw in
//     /proc/<pid>/io, writev included) per frame delivered, above the
//     camera's own;
//   - idle-KB/viewer: the server's RSS growth per connected viewer before
//     any frame, and KB/viewer the same while streaming.
//
// The machine's other load moves the figures; note the load average.
//
//	go test -run '^$' -bench Viewers -benchtime 1x ./plugins/mjpeg
//	go test -run '^$' -bench 'Viewers/viewers=500$' -benchtime 1x ./plugins/mjpeg
func BenchmarkViewers(b *testing.B) {
	for _, n := range []int{1, 50, 200, 500, 1000} {
		b.Run(fmt.Sprintf("viewers=%d", n), func(b *testing.B) { benchViewers(b, n) })
	}
}

// TestViewersServer is BenchmarkViewers' server: the plugin and a 30 fps
// camera source, which starts on SIGUSR1 so that the memory of connected
// viewers can be measured before any frame. It hands its parent the
// stream's URL.
func TestViewersServer(t *testing.T) {
	if !sdktest.InChild(t) {
		t.Skip("the server of BenchmarkViewers, run by it")
	}
	n := os.Getenv(benchViewersEnv)
	if path := os.Getenv(benchProfileEnv); path != "" {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			t.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	go_ := make(chan os.Signal, 1)
	signal.Notify(go_, syscall.SIGUSR1)
	defer signal.Stop(go_)
	jpg, err := device.NewSim(640, 480, benchFPS, 80).Frame(1, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	h := sdktest.New(t, &MJPEG{})
	urls, err := h.Start("bench", []string{"cam"}, fmt.Sprintf("listen: 127.0.0.1:0\nmax_viewers: %s\nmax_viewers_per_client: %s\n", n, n))
	if err != nil {
		t.Fatal(err)
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-stop:
			return
		case <-go_:
		}
		tick := time.NewTicker(time.Second / benchFPS)
		defer tick.Stop()
		for seq := uint64(1); ; seq++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if err := h.Send(sdk.Frame{Camera: "cam", Seq: seq, Captured: time.Now(), Width: 640, Height: 480, JPEG: jpg}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	sdktest.Ready(t, urls[1])
	close(stop)
	<-done
}

func benchViewers(b *testing.B, n int) {
	const window = 4 * time.Second
	var (
		lat                     []int32 // µs
		frames, minFrames       int
		cpu, writes             int64
		idleBytes, streamBytes  int64
		elapsed                 time.Duration
		cameraCPU, cameraWrites int64   // what the camera alone would have cost in the windows
		cameraAlone             int64   // the camera's CPU with no viewer, µs
		cameraFrames            float64 // its frames meanwhile
		iterations              int
	)
	for range b.N {
		child := sdktest.StartChild(b, "TestViewersServer", benchViewersEnv+"="+strconv.Itoa(n))
		time.Sleep(300 * time.Millisecond)
		before := child.RSS()
		crowd, err := dialCrowd(child.Ready, n)
		if err != nil {
			b.Fatal(err)
		}
		time.Sleep(time.Second)
		idle := child.RSS()
		if err := syscall.Kill(child.Pid, syscall.SIGUSR1); err != nil {
			b.Fatal(err)
		}
		if err := crowd.waitFirst(20 * time.Second); err != nil {
			b.Fatal(err)
		}
		time.Sleep(time.Second) // warm up
		crowd.record(true)
		cpu0, w0, t0 := procCPU(b, child.Pid), procWrites(b, child.Pid), time.Now()
		time.Sleep(window)
		cpu1, w1, t1 := procCPU(b, child.Pid), procWrites(b, child.Pid), time.Now()
		crowd.record(false)
		streaming := child.RSS()
		crowd.close()
		if err := crowd.err(); err != nil {
			b.Fatal(err)
		}
		// The camera alone: the source's gRPC hop and HandleFrame.
		time.Sleep(time.Second)
		cpu2, w2, t2 := procCPU(b, child.Pid), procWrites(b, child.Pid), time.Now()
		time.Sleep(window / 2)
		cpu3, w3, t3 := procCPU(b, child.Pid), procWrites(b, child.Pid), time.Now()
		alone := t3.Sub(t2)
		got, least, l := crowd.result()
		frames += got
		minFrames = least
		lat = append(lat, l...)
		cpu += cpu1 - cpu0
		writes += w1 - w0
		elapsed += t1.Sub(t0)
		// What the camera alone would have cost over the window.
		cameraCPU += int64(float64(cpu3-cpu2) * t1.Sub(t0).Seconds() / alone.Seconds())
		cameraWrites += int64(float64(w3-w2) * t1.Sub(t0).Seconds() / alone.Seconds())
		cameraFrames += benchFPS * alone.Seconds()
		cameraAlone += cpu3 - cpu2
		idleBytes += idle - before
		streamBytes += streaming - before
		iterations++
	}
	if frames == 0 {
		b.Fatal("no frames received")
	}
	slices.Sort(lat)
	ms := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))]) / 1000 }
	b.ReportMetric(float64(cpu)/float64(frames), "µs/frame")
	b.ReportMetric(float64(cpu-cameraCPU)/float64(frames), "µs/part")
	b.ReportMetric(float64(cameraAlone)/cameraFrames, "camera-µs")
	b.ReportMetric(ms(0.50), "p50-ms")
	b.ReportMetric(ms(0.99), "p99-ms")
	b.ReportMetric(float64(minFrames)/(elapsed/time.Duration(iterations)).Seconds(), "min-fps")
	b.ReportMetric(float64(writes-cameraWrites)/float64(frames), "writes/part")
	b.ReportMetric(float64(idleBytes)/float64(iterations*n)/1024, "idle-KB/viewer")
	b.ReportMetric(float64(streamBytes)/float64(iterations*n)/1024, "KB/viewer")
	b.ReportMetric(float64(cpu)/1000/elapsed.Seconds()/10, "cpu-%")
}

// procCPU returns the CPU time process pid has used, in µs: the sum of
// its threads' run time in /proc/<pid>/task/*/schedstat, which counts
// nanoseconds where /proc/<pid>/stat counts 10 ms ticks. (A thread that
// exits takes its time with it; Go's threads do not exit.)
func procCPU(b *testing.B, pid int) int64 {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(tasks) == 0 {
		b.Fatalf("threads of %d: %v", pid, err)
	}
	var ns int64
	for _, t := range tasks {
		st, err := os.ReadFile(t)
		if err != nil {
			continue // exited
		}
		f := strings.Fields(string(st))
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		ns += n
	}
	return ns / 1000
}

// procWrites returns how many write system calls (write, writev, pwrite)
// process pid has made.
func procWrites(b *testing.B, pid int) int64 {
	io, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(io)) {
		if v, ok := strings.CutPrefix(line, "syscw: "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	b.Fatal("no syscw in /proc/pid/io")
	return 0
}

// crowd is a benchmark's viewers: raw TCP connections that parse parts by
// Content-Length and drop frames unread (see discard), so that the viewers
// cost the shared CPU little.
type crowd struct {
	recording atomic.Bool
	wg        sync.WaitGroup
	each      []*benchViewer

	mu    sync.Mutex
	first error
}

// benchViewer is one connection; its fields are written by its goroutine
// and read after the crowd closed.
type benchViewer struct {
	conn    net.Conn
	raw     syscall.RawConn
	got     atomic.Bool // had a frame
	frames  int         // recorded
	latency []int32     // recorded, µs
}

// dialCrowd connects n viewers to the stream at rawURL and returns once
// each has read the response's head.
func dialCrowd(rawURL string, n int) (*crowd, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	c := &crowd{}
	for range n {
		conn, err := net.Dial("tcp", u.Host)
		if err != nil {
			c.close()
			return nil, err
		}
		raw, err := conn.(*net.TCPConn).SyscallConn()
		if err != nil {
			c.close()
			return nil, err
		}
		v := &benchViewer{conn: conn, raw: raw, latency: make([]int32, 0, 256)}
		c.each = append(c.each, v)
		if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", u.RequestURI(), u.Host); err != nil {
			c.close()
			return nil, err
		}
		br := bufio.NewReaderSize(conn, 4<<10)
		status, err := br.ReadString('\n')
		if err != nil || !strings.Contains(status, " 200 ") {
			c.close()
			return nil, fmt.Errorf("viewer %d: %q %v", len(c.each), status, err)
		}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			if err := c.read(v, br); err != nil && !errors.Is(err, net.ErrClosed) {
				c.mu.Lock()
				c.first = cmp.Or(c.first, err)
				c.mu.Unlock()
			}
		}()
	}
	return c, nil
}

// read reads parts until the connection ends.
func (c *crowd) read(v *benchViewer, br *bufio.Reader) error {
	length, stamp := -1, int64(0)
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		line = bytes.TrimRight(line, "\r\n")
		if k, val, ok := bytes.Cut(line, []byte(": ")); ok {
			switch string(k) {
			case "Content-Length":
				length, _ = strconv.Atoi(string(val))
			case "X-Timestamp":
				sec, frac, _ := bytes.Cut(val, []byte("."))
				s, _ := strconv.ParseInt(string(sec), 10, 64)
				us, _ := strconv.ParseInt(string(frac), 10, 64)
				stamp = s*1e6 + us
			}
			continue
		}
		if len(line) != 0 || length < 0 {
			continue // the boundary, or the blank line ending the response head
		}
		if err := v.discard(br, length); err != nil {
			return err
		}
		length = -1
		v.got.Store(true)
		if c.recording.Load() {
			v.frames++
			v.latency = append(v.latency, int32(time.Now().UnixMicro()-stamp))
		}
	}
}

// sink is where discarded frame bytes would go: recv with MSG_TRUNC
// drops them in the kernel without writing here.
var sink = make([]byte, 1<<20)

// discard drops the next n bytes of the stream: what br holds, then the
// rest in the kernel (recv with MSG_TRUNC), so that reading a frame costs
// the viewer no copy and the server, on the same cores, its CPU.
func (v *benchViewer) discard(br *bufio.Reader, n int) error {
	held := min(n, br.Buffered())
	if _, err := br.Discard(held); err != nil {
		return err
	}
	for n -= held; n > 0; {
		var (
			got  int
			rerr error
		)
		err := v.raw.Read(func(fd uintptr) bool {
			got, _, rerr = syscall.Recvfrom(int(fd), sink[:min(n, len(sink))], syscall.MSG_TRUNC)
			return rerr != syscall.EAGAIN
		})
		switch {
		case err != nil:
			return err
		case rerr != nil:
			return rerr
		case got == 0:
			return io.EOF
		}
		n -= got
	}
	return nil
}

// waitFirst waits until every viewer has had a frame.
func (c *crowd) waitFirst(timeout time.Duration) error {
	for deadline := time.Now().Add(timeout); ; time.Sleep(20 * time.Millisecond) {
		if err := c.err(); err != nil {
			return err
		}
		waiting := 0
		for _, v := range c.each {
			if !v.got.Load() {
				waiting++
			}
		}
		if waiting == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d viewers had no frame after %s", waiting, len(c.each), timeout)
		}
	}
}

func (c *crowd) record(on bool) { c.recording.Store(on) }

// close disconnects every viewer and waits for their goroutines.
func (c *crowd) close() {
	for _, v := range c.each {
		v.conn.Close()
	}
	c.wg.Wait()
}

func (c *crowd) err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.first
}

// result returns, after close, the frames recorded in all, those of the
// slowest viewer, and every latency.
func (c *crowd) result() (frames, least int, lat []int32) {
	least = -1
	for _, v := range c.each {
		frames += v.frames
		if least < 0 || v.frames < least {
			least = v.frames
		}
		lat = append(lat, v.latency...)
	}
	return frames, least, lat
}

// BenchmarkFlood floods the plugin, in a process of its own, with 10,000
// half-open connections from one address and reports its resident memory
// before, during, and 5 s after the flood, for the default config (the
// per-client connection cap takes the flood) and with the per-client caps
// raised (the server's cap takes it, and the memory of what it let in is
// returned when the flood ends).
//
//	go test -run '^$' -bench Flood -benchtime 1x ./plugins/mjpeg
func BenchmarkFlood(b *testing.B) {
	const flood = 10000
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < flood+1000 {
		b.Skipf("needs %d file descriptors (ulimit -n)", flood+1000)
	}
	for _, bc := range []struct{ name, config string }{
		{"defaults", ""},
		{"per-client-caps-raised", "max_viewers_per_client: 20000\n"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				child := sdktest.StartChild(b, "TestFloodServer", floodConfigEnv+"="+bc.config)
				time.Sleep(time.Second)
				before := child.RSS()
				f := sdktest.NewFlood(b, strings.TrimPrefix(child.Ready, "http://"), "127.0.0.1", flood)
				time.Sleep(time.Second)
				during := child.RSS()
				f.Close()
				time.Sleep(5 * time.Second)
				after := child.RSS()
				b.ReportMetric(float64(before)/(1<<20), "MB-before")
				b.ReportMetric(float64(during)/(1<<20), "MB-during")
				b.ReportMetric(float64(after)/(1<<20), "MB-after")
			}
		})
	}
}
