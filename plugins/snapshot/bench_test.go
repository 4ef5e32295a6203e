package main

import (
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/camd/camd/device"
	"github.com/camd/camd/sdk"
)

// BenchmarkSnapshot50Clients has 50 clients fetch snapshot.jpg (a 640x480
// frame from memory) as fast as they can for 2 s per iteration, while the
// camera delivers 30 fps, and reports requests per second and latency.
//
//	go test -run '^$' -bench Snapshot -benchtime 1x ./plugins/snapshot
func BenchmarkSnapshot50Clients(b *testing.B) {
	const clients = 50
	jpg, err := device.NewSim(640, 480, 30, 80).Frame(1, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	h, base := start(b, &Snapshot{}, "")
	url := base + "/cameras/cam/snapshot.jpg"
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second / 30)
		defer t.Stop()
		for seq := uint64(1); ; seq++ {
			select {
			case <-stop:
				return
			case <-t.C:
				h.Send(sdk.Frame{Camera: "cam", Seq: seq, Captured: time.Now(), JPEG: jpg})
			}
		}
	}()
	defer close(stop)
	time.Sleep(100 * time.Millisecond)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}

	var mu sync.Mutex
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		end := time.Now().Add(2 * time.Second)
		var wg sync.WaitGroup
		for c := 0; c < clients; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var mine []time.Duration
				for time.Now().Before(end) {
					t0 := time.Now()
					resp, err := client.Get(url)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
					mine = append(mine, time.Since(t0))
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			}()
		}
		wg.Wait()
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(len(lat))/(2*float64(b.N)), "req/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
