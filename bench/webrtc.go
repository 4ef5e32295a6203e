package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
)

// webrtcBench measures the webrtc plugin: one sim camera (640x480, 30
// fps) encoded once and sent to n pion WHEP viewers. Each viewer count
// gets a fresh camd, so the memory a viewer adds is not blurred by the
// last count's leftovers.
type webrtcBench struct {
	bin            string
	counts         []int
	window, warmup time.Duration
	// udpPort, when set, is ice.udp_ports: every viewer on one socket.
	udpPort int
	repeat  int // runs per viewer count; the report has their medians
	rows    []webrtcRow
}

// webrtcRow is one measurement at a viewer count.
type webrtcRow struct {
	viewers  int
	plugin   float64   // the plugin's CPU, in cores (the median run's)
	runs     []float64 // each run's plugin CPU
	camd     float64   // camd's own, in cores
	rss      int64     // the plugin's, with n viewers
	minFPS   float64   // of the slowest viewer
	joinedIn time.Duration
}

func (b *webrtcBench) run(ctx context.Context, w io.Writer) error {
	dir, err := os.MkdirTemp("", "camd-bench-webrtc-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	load0 := loadavg()
	// The counts take turns, each run on a fresh camd, so that a noisy
	// stretch of a shared machine falls on one run of several counts
	// rather than on every run of one.
	runs := make([][]webrtcRow, len(b.counts))
	for rep := 1; rep <= b.repeat; rep++ {
		for i, n := range b.counts {
			fmt.Fprintf(os.Stderr, "bench: webrtc run %d of %d, %d viewers\n", rep, b.repeat, n)
			r, err := b.measure(ctx, dir, n)
			if err != nil {
				return fmt.Errorf("webrtc, %d viewers: %w", n, err)
			}
			runs[i] = append(runs[i], r)
		}
	}
	for _, rs := range runs {
		b.rows = append(b.rows, medianWebRTC(rs))
	}
	b.report(w, load0, loadavg())
	return nil
}

func (b *webrtcBench) measure(ctx context.Context, dir string, n int) (webrtcRow, error) {
	cd, whep, err := b.startCamd(ctx, dir)
	if err != nil {
		return webrtcRow{}, err
	}
	defer cd.stop()
	plugin, err := findChild(cd.cmd.Process.Pid, "camd-plugin-webrtc")
	if err != nil {
		return webrtcRow{}, err
	}
	pluginProcs := procTree{plugin}

	vs := &rtcViewers{url: whep}
	defer vs.close()
	t0 := time.Now()
	if err := vs.join(ctx, n); err != nil {
		return webrtcRow{}, err
	}
	if err := vs.ready(ctx, 60*time.Second); err != nil {
		return webrtcRow{}, err
	}
	joined := time.Since(t0)
	time.Sleep(b.warmup)
	camdOwn := procTree{cd.cmd.Process.Pid}
	p0, a0, s0 := pluginProcs.cpu(), camdOwn.cpu(), time.Now()
	vs.record(true)
	select {
	case <-ctx.Done():
		return webrtcRow{}, ctx.Err()
	case <-time.After(b.window):
	}
	vs.record(false)
	el := time.Since(s0)
	pcpu, all := pluginProcs.cpu()-p0, camdOwn.cpu()-a0
	out := webrtcRow{viewers: n, joinedIn: joined, rss: pluginProcs.rss(),
		plugin: pcpu.Seconds() / el.Seconds(), camd: (all - pcpu).Seconds() / el.Seconds()}
	minFrames := -1
	for _, v := range vs.vs {
		f := int(v.counted.Load())
		if minFrames < 0 || f < minFrames {
			minFrames = f
		}
	}
	out.minFPS = float64(minFrames) / el.Seconds()
	if err := vs.err(); err != nil {
		return out, err
	}
	return out, nil
}

// startCamd runs camd with one sim camera and a webrtc output whose caps
// admit every viewer; it returns the camera's WHEP URL once camd has
// frames.
func (b *webrtcBench) startCamd(ctx context.Context, dir string) (*relay, string, error) {
	api, err := freePort()
	if err != nil {
		return nil, "", err
	}
	out, err := freePort()
	if err != nil {
		return nil, "", err
	}
	absBin, err := filepath.Abs(b.bin)
	if err != nil {
		return nil, "", err
	}
	ice := ""
	if b.udpPort > 0 {
		ice = fmt.Sprintf(", ice: {udp_ports: \"%d\"}", b.udpPort)
	}
	cfg := fmt.Sprintf(`http: {listen: %q}
plugin_dir: %q
log_level: warn
cameras:
  - name: bench
    source: {type: sim, size: 640x480, fps: 30}
outputs:
  - name: webrtc
    plugin: webrtc
    config: {listen: %q, max_viewers: 5000, max_viewers_per_client: 5000%s}
`, api, absBin, out, ice)
	path := filepath.Join(dir, "camd.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return nil, "", err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(absBin, "camd"), "run", "-config", path)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("start camd: %w", err)
	}
	r := &relay{name: "camd", cmd: cmd, procs: procTree{cmd.Process.Pid}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var st struct {
			Cameras []struct {
				Frames uint64 `json:"frames"`
			} `json:"cameras"`
		}
		err := getJSON("http://"+api+"/api/status", &st)
		if err == nil && len(st.Cameras) == 1 && st.Cameras[0].Frames > 0 {
			return r, "http://" + out + "/cameras/bench/whep", nil
		}
		if time.Now().After(deadline) {
			r.stop()
			return nil, "", fmt.Errorf("camd: no frames after 30s (%v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// findChild returns the pid of root's child process whose command is name.
func findChild(root int, name string) (int, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, pid := range (procTree{root}).pids()[1:] {
			if cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil {
				exe, _, _ := bytes.Cut(cmd, []byte{0})
				if filepath.Base(string(exe)) == name {
					return pid, nil
				}
			}
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("no %s process under camd", name)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rtcViewers are the benchmark's WHEP viewers: pion peer connections with
// no interceptors (they only count frames), gathering on loopback.
type rtcViewers struct {
	url       string
	api       *webrtc.API
	vs        []*rtcViewer
	recording atomic.Bool // frames are counted
	mu        sync.Mutex
	errs      []error
}

type rtcViewer struct {
	pc        *webrtc.PeerConnection
	got       chan struct{} // closed at the first whole frame
	once      sync.Once
	recording *atomic.Bool
	counted   atomic.Int64 // frames ended (RTP marker) while recording
}

func (vs *rtcViewers) join(ctx context.Context, n int) error {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		return err
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	vs.api = webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se))
	// A few offers at a time, as browsers arriving would: the plugin
	// answers each after gathering.
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	vs.vs = make([]*rtcViewer, n)
	for i := range n {
		v := &rtcViewer{got: make(chan struct{}), recording: &vs.recording}
		vs.vs[i] = v
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := v.dial(ctx, vs.api, vs.url); err != nil {
				vs.fail(err)
			}
		}()
	}
	wg.Wait()
	return vs.err()
}

func (vs *rtcViewers) fail(err error) {
	vs.mu.Lock()
	vs.errs = append(vs.errs, err)
	vs.mu.Unlock()
}

func (vs *rtcViewers) err() error {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	if len(vs.errs) > 0 {
		return fmt.Errorf("%d viewers failed, first: %w", len(vs.errs), vs.errs[0])
	}
	return nil
}

// ready waits until every viewer has had a whole frame.
func (vs *rtcViewers) ready(ctx context.Context, limit time.Duration) error {
	timeout := time.After(limit)
	for i, v := range vs.vs {
		select {
		case <-v.got:
		case <-timeout:
			return fmt.Errorf("viewer %d of %d had no frame after %s", i+1, len(vs.vs), limit)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (vs *rtcViewers) record(on bool) { vs.recording.Store(on) }

func (vs *rtcViewers) close() {
	for _, v := range vs.vs {
		if v != nil && v.pc != nil {
			_ = v.pc.Close()
		}
	}
}

// dial offers to receive video, posts the offer to url and reads the
// track, counting frames, until the peer connection closes.
func (v *rtcViewer) dial(ctx context.Context, api *webrtc.API, url string) error {
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return err
	}
	v.pc = pc
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		return err
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		buf := make([]byte, 1500)
		for {
			n, _, err := tr.Read(buf)
			if err != nil {
				return
			}
			if n > 1 && buf[1]&0x80 != 0 { // the RTP marker: a frame's last packet
				v.once.Do(func() { close(v.got) })
				if v.recording.Load() {
					v.counted.Add(1)
				}
			}
		}
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return err
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return err
	}
	<-gathered
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(pc.LocalDescription().SDP))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/sdp")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("WHEP: %s: %s", resp.Status, bytes.TrimSpace(answer))
	}
	if len(answer) == 0 {
		return errors.New("WHEP: empty answer")
	}
	return pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(answer)})
}

// medianWebRTC is the run with the median plugin CPU, with its memory
// and frame rate replaced by their own medians.
func medianWebRTC(rs []webrtcRow) webrtcRow {
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b webrtcRow) int { return cmp.Compare(a.plugin, b.plugin) })
	out := s[(len(s)-1)/2]
	rss := make([]int64, len(rs))
	fps := make([]float64, len(rs))
	out.runs = nil
	for i, r := range rs {
		rss[i], fps[i] = r.rss, r.minFPS
		out.runs = append(out.runs, r.plugin)
	}
	out.rss, out.minFPS = median(rss), median(fps)
	return out
}

func (b *webrtcBench) report(w io.Writer, load0, load1 string) {
	fmt.Fprintf(w, "camd WebRTC benchmark: one sim camera, 640x480 at 30 fps, H.264 at the default 1,500 kbps, pion WHEP viewers on loopback%s, %s windows\n\n",
		map[bool]string{true: fmt.Sprintf(" (one UDP port, %d)", b.udpPort), false: ""}[b.udpPort > 0], b.window)
	fmt.Fprintf(w, "Machine: %s. Load average before %s, after %s. %s.\n\n", machine(), load0, load1, time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "Each figure is the median of %d runs, the viewer counts taking turns, each on a fresh camd.\n\n", b.repeat)
	fmt.Fprintln(w, "| viewers | plugin CPU % of a core | each run's | ÷ one viewer's | camd CPU % | plugin RSS MB | KB per viewer | slowest viewer fps | all joined in |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	var one *webrtcRow
	for i, r := range b.rows {
		if r.viewers == 1 {
			one = &b.rows[i]
		}
	}
	for _, r := range b.rows {
		ratio, per := "", ""
		if one != nil {
			ratio = fmt.Sprintf("%.2f×", r.plugin/one.plugin)
			if r.viewers > 1 {
				per = fmt.Sprintf("%.0f", float64(r.rss-one.rss)/float64(r.viewers-1)/1024)
			}
		}
		each := make([]string, len(r.runs))
		for i, x := range r.runs {
			each[i] = fmt.Sprintf("%.1f", 100*x)
		}
		fmt.Fprintf(w, "| %d | %.1f | %s | %s | %.1f | %.1f | %s | %.1f | %s |\n", r.viewers, 100*r.plugin, strings.Join(each, " / "), ratio, 100*r.camd,
			float64(r.rss)/1e6, per, r.minFPS, r.joinedIn.Round(10*time.Millisecond))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "KB per viewer is the plugin's RSS above its RSS with one viewer (the encoder running), over the viewers added; with few viewers it still carries one-time costs (pion's buffer pools, the send batch).")
	fmt.Fprintln(w)
	if one == nil {
		return
	}
	check := targets(w)
	check(one.plugin <= 0.10, "one viewer: the plugin uses %.1f %% of a core (encoder ≤ 10 %%)", 100*one.plugin)
	for _, r := range b.rows {
		if r.viewers == 50 {
			check(r.plugin <= 2*one.plugin, "50 viewers: %.2f× one viewer's CPU (≤ 2×)", r.plugin/one.plugin)
		}
		if r.viewers >= 50 { // below, one-time costs (pools, the send batch) still show
			per := float64(r.rss-one.rss) / float64(r.viewers-1)
			check(per <= 300<<10, "%d viewers: %.0f KB per viewer (≤ 300)", r.viewers, per/1024)
		}
		check(r.minFPS >= 29, "%d viewers: slowest viewer %.1f fps (≥ 29)", r.viewers, r.minFPS)
	}
}
