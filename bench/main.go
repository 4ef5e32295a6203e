// Command bench measures what a camera costs camd: it relays a stamped
// 640x480 30 fps MJPEG source through bin/camd and its mjpeg plugin to 1 to
// 1,000 MJPEG viewers and prints, per viewer count, the CPU camd and the
// plugin spend per delivered frame (from /proc), the latency from the
// source's stamp to each frame's last byte at the viewer, the slowest
// viewer's frame rate and the memory; then the fixed cost of a camera with
// no viewer and the plugin hop (camd's latency with one viewer against a
// direct read of the source). With -go2rtc it measures go2rtc the same way
// in the same run, for comparison.
//
//	make bench                                   # camd alone
//	go run ./bench -go2rtc /path/to/go2rtc       # side by side
//
// The figures mean something only on a quiet machine: it prints the load
// average before and after.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"
)

func main() {
	var (
		bin     = flag.String("bin", "bin", "directory holding camd and its plugins (make build)")
		go2rtc  = flag.String("go2rtc", os.Getenv("GO2RTC"), "a go2rtc binary to measure beside camd (optional)")
		counts  = flag.String("viewers", "1,50,200,500,1000", "viewer counts to measure")
		window  = flag.Duration("window", 10*time.Second, "how long each measurement records")
		repeat  = flag.Int("repeat", 3, "runs of each measurement, taking turns (camd's and go2rtc's; WebRTC's viewer counts); the report gives their medians")
		warmup  = flag.Duration("warmup", 3*time.Second, "how long viewers run before recording")
		fps     = flag.Int("fps", 30, "the source's frame rate")
		size    = flag.Int("frame-bytes", 37000, "the source's frame size, about")
		outFile = flag.String("o", "", "also write the report (markdown) to this file")
		trickle = flag.Duration("trickle", 0, "send each frame in 1,460-byte segments spread over this long, as over Wi-Fi (0: at once)")
		serve   = flag.Bool("serve", false, "only serve the stamped source and print its URL, for profiling by hand")
		bareURL = flag.String("bare-read", "", "only read this URL's body forever, discarding it (the benchmark's bare reader)")
		rtc     = flag.Bool("webrtc", false, "measure the webrtc plugin instead: one sim camera, pion WHEP viewers (default -viewers 1,10,50,100)")
		udpPort = flag.Int("udp-port", 0, "with -webrtc: ice.udp_ports, every viewer on this one UDP port (0: a port per viewer)")
	)
	flag.Parse()
	if *rtc && !flagSet("viewers") {
		*counts = "1,10,50,100"
	}
	var ns []int
	for _, s := range strings.Split(*counts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			log.Fatalf("bench: bad -viewers %q", *counts)
		}
		ns = append(ns, n)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if *bareURL != "" {
		if err := bareRead(ctx, *bareURL); err != nil {
			log.Fatalf("bench: bare read: %v", err)
		}
		return
	}
	if *serve {
		if err := serveSource(ctx, *fps, *size, *trickle); err != nil {
			log.Fatalf("bench: %v", err)
		}
		return
	}
	var w io.Writer = os.Stdout
	var report strings.Builder
	if *outFile != "" {
		w = io.MultiWriter(os.Stdout, &report)
	}
	var err error
	if *rtc {
		err = (&webrtcBench{bin: *bin, counts: ns, window: *window, warmup: *warmup, udpPort: *udpPort, repeat: max(1, *repeat)}).run(ctx, w)
	} else {
		err = (&bench{repeat: max(1, *repeat), trickle: *trickle, bin: *bin, go2rtc: *go2rtc, counts: ns, window: *window, warmup: *warmup, fps: *fps, frameBytes: *size}).run(ctx, w)
	}
	if err != nil {
		log.Fatalf("bench: %v", err)
	}
	if *outFile != "" {
		if err := os.WriteFile(*outFile, []byte(report.String()), 0o644); err != nil {
			log.Fatalf("bench: %v", err)
		}
	}
}

// flagSet reports whether the flag was given on the command line.
func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// serveSource serves the stamped source until ctx ends.
func serveSource(ctx context.Context, fps, size int, trickle time.Duration) error {
	frames, err := makeFrames(30, 640, 480, size)
	if err != nil {
		return err
	}
	src, err := startSource(ctx, frames, fps, trickle)
	if err != nil {
		return err
	}
	defer src.Close()
	fmt.Println(src.url)
	<-ctx.Done()
	return nil
}
