package main

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/camd/camd/device"
	"github.com/camd/camd/sdk"
	"github.com/camd/camd/sdk/sdktest"
)

// BenchmarkViewers serves a 640x480 camera at 30 fps through the plugin
// (over real gRPC, as under camd) to 1, 50 and 200 viewers for 3 s per
// iteration and reports the frame rate each viewer got and the added
// latency from capture to a viewer having parsed the whole frame.
//
//	go test -run '^$' -bench Viewers -benchtime 1x ./plugins/mjpeg
func BenchmarkViewers(b *testing.B) {
	for _, n := range []int{1, 50, 200} {
		b.Run(fmt.Sprintf("viewers=%d", n), func(b *testing.B) { benchViewers(b, n) })
	}
}

func benchViewers(b *testing.B, viewers int) {
	const fps, seconds = 30, 3
	jpg, err := device.NewSim(640, 480, fps, 80).Frame(1, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	h := sdktest.New(b, &MJPEG{})
	urls, err := h.Start("bench", []string{"cam"}, fmt.Sprintf("listen: 127.0.0.1:0\nmax_viewers: %d\nmax_viewers_per_client: %d\n", viewers, viewers))
	if err != nil {
		b.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: viewers}}

	var (
		mu       sync.Mutex
		lat      []time.Duration
		received int
	)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var wg sync.WaitGroup
		stop := make(chan struct{})
		ready := make(chan struct{}, viewers)
		for v := 0; v < viewers; v++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := client.Get(urls[1])
				if err != nil {
					b.Error(err)
					ready <- struct{}{}
					return
				}
				defer resp.Body.Close()
				ready <- struct{}{}
				r := device.NewMultipartReader(resp.Body, Boundary, 8<<20)
				go func() { <-stop; resp.Body.Close() }()
				for {
					hdr, _, err := r.NextPart()
					if err != nil {
						return
					}
					now := time.Now()
					sec, frac, _ := strings.Cut(hdr.Get("X-Timestamp"), ".")
					s, _ := strconv.ParseInt(sec, 10, 64)
					us, _ := strconv.ParseInt(frac, 10, 64)
					mu.Lock()
					lat = append(lat, now.Sub(time.Unix(s, us*1000)))
					received++
					mu.Unlock()
				}
			}()
		}
		for v := 0; v < viewers; v++ {
			<-ready
		}
		tick := time.NewTicker(time.Second / fps)
		for seq := uint64(1); seq <= fps*seconds; seq++ {
			<-tick.C
			if err := h.Send(sdk.Frame{Camera: "cam", Seq: seq + uint64(i)*1000, Captured: time.Now(), Width: 640, Height: 480, JPEG: jpg}); err != nil {
				b.Fatal(err)
			}
		}
		tick.Stop()
		time.Sleep(100 * time.Millisecond) // let the last frame arrive
		close(stop)
		wg.Wait()
	}
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) == 0 {
		b.Fatal("no frames received")
	}
	b.ReportMetric(float64(received)/float64(b.N*viewers*seconds), "fps/viewer")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(len(jpg))/1024, "KiB/frame")
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
