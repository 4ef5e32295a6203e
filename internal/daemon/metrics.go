package daemon

import (
	"bytes"
	"context"
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/proto"

	"github.com/camd/camd/device"
	"github.com/camd/camd/internal/pluginhost"
)

// metricsHandler serves /metrics: camd's cameras and outputs, each
// plugin's own metrics (renamed camd_plugin_<name>, labelled with the
// output), and camd's Go runtime and process metrics.
func (d *Daemon) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), camdCollector{d})
	return promhttp.HandlerFor(prometheus.Gatherers{reg, pluginGatherer{d}}, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

var (
	camLabels   = []string{"camera"}
	descFrames  = prometheus.NewDesc("camd_camera_frames_total", "Good frames the camera delivered.", camLabels, nil)
	descBytes   = prometheus.NewDesc("camd_camera_bytes_total", "Bytes of the good frames the camera delivered.", camLabels, nil)
	descPlace   = prometheus.NewDesc("camd_camera_placeholder_frames_total", "Offline placeholder frames sent for the camera.", camLabels, nil)
	descDrops   = prometheus.NewDesc("camd_camera_dropped_frames_total", "Frames from the camera dropped as bad, by reason.", []string{"camera", "reason"}, nil)
	descState   = prometheus.NewDesc("camd_camera_state", "1 for the camera's current state (live, offline, failing, stopped, idle: on_demand and unwanted).", []string{"camera", "state"}, nil)
	descAge     = prometheus.NewDesc("camd_camera_last_frame_age_seconds", "Time since the camera's newest good frame was captured.", camLabels, nil)
	descReconn  = prometheus.NewDesc("camd_camera_reconnects_total", "Connection attempts to the camera after the first.", camLabels, nil)
	outLabels   = []string{"output"}
	descSent    = prometheus.NewDesc("camd_output_frames_sent_total", "Frames camd sent to the output's plugin.", []string{"output", "camera"}, nil)
	descODrop   = prometheus.NewDesc("camd_output_frames_dropped_total", "Frames the output skipped because its plugin was still busy with an older one.", []string{"output", "camera"}, nil)
	descRestart = prometheus.NewDesc("camd_output_restarts_total", "Times the output's plugin was restarted.", outLabels, nil)
	descUp      = prometheus.NewDesc("camd_output_up", "1 while the output's plugin runs.", outLabels, nil)
	states      = []device.State{device.StateLive, device.StateOffline, device.StateFailing, device.StateStopped, device.StateIdle}
)

// camdCollector reads the cameras' and outputs' counters at scrape time:
// nothing is counted twice, and the frame path pays nothing for metrics.
type camdCollector struct{ d *Daemon }

func (c camdCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descFrames, descBytes, descPlace, descDrops, descState, descAge, descReconn, descSent, descODrop, descRestart, descUp} {
		ch <- d
	}
}

func (c camdCollector) Collect(ch chan<- prometheus.Metric) {
	c.d.mu.Lock()
	cams, outs := slices.Clone(c.d.cameras), slices.Clone(c.d.outputs)
	c.d.mu.Unlock()
	now := time.Now()
	for _, r := range cams {
		s, asleep := r.stats()
		name := r.cfg.Name
		ch <- prometheus.MustNewConstMetric(descFrames, prometheus.CounterValue, float64(s.Frames), name)
		ch <- prometheus.MustNewConstMetric(descBytes, prometheus.CounterValue, float64(r.bytes.Load()), name)
		ch <- prometheus.MustNewConstMetric(descPlace, prometheus.CounterValue, float64(s.Placeholders), name)
		for reason, n := range s.Drops {
			ch <- prometheus.MustNewConstMetric(descDrops, prometheus.CounterValue, float64(n), name, device.DropReason(reason).String())
		}
		for _, st := range states {
			v := 0.0
			if s.State == st {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(descState, prometheus.GaugeValue, v, name, string(st))
		}
		if !s.LastFrame.IsZero() && !asleep { // asleep, no frame is due
			ch <- prometheus.MustNewConstMetric(descAge, prometheus.GaugeValue, now.Sub(s.LastFrame).Seconds(), name)
		}
		ch <- prometheus.MustNewConstMetric(descReconn, prometheus.CounterValue, float64(s.Reconnects), name)
	}
	for _, o := range outs {
		st := o.out.Counters()
		for cam, n := range st.Cameras {
			ch <- prometheus.MustNewConstMetric(descSent, prometheus.CounterValue, float64(n.Sent), o.spec.Name, cam)
			ch <- prometheus.MustNewConstMetric(descODrop, prometheus.CounterValue, float64(n.Dropped), o.spec.Name, cam)
		}
		ch <- prometheus.MustNewConstMetric(descRestart, prometheus.CounterValue, float64(st.Restarts), o.spec.Name)
		up := 0.0
		if st.State == pluginhost.StateRunning {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up, o.spec.Name)
	}
}

// pluginGatherer asks every running plugin for its metrics, in parallel,
// and merges them: each family renamed camd_plugin_<name>, each sample
// labelled with its output. A plugin that does not answer in time is left
// out of this scrape.
type pluginGatherer struct{ d *Daemon }

func (g pluginGatherer) Gather() ([]*dto.MetricFamily, error) {
	g.d.mu.Lock()
	outs := slices.Clone(g.d.outputs)
	g.d.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	texts := make([][]byte, len(outs))
	var wg sync.WaitGroup
	for i, o := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			texts[i], _ = o.out.Metrics(ctx) // a plugin without metrics: nothing
		}()
	}
	wg.Wait()

	merged := map[string]*dto.MetricFamily{}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	for i, text := range texts {
		if len(text) == 0 {
			continue
		}
		fams, err := parser.TextToMetricFamilies(bytes.NewReader(text))
		if err != nil {
			g.d.log.Debug("plugin metrics unreadable", "output", outs[i].spec.Name, "err", err)
			continue
		}
		label := &dto.LabelPair{Name: proto.String("output"), Value: proto.String(outs[i].spec.Name)}
		for name, mf := range fams {
			name = "camd_plugin_" + name
			m := merged[name]
			if m == nil {
				m = &dto.MetricFamily{Name: proto.String(name), Help: mf.Help, Type: mf.Type}
				merged[name] = m
			} else if m.GetType() != mf.GetType() {
				continue // two plugins disagree on a name's type: keep the first
			}
			for _, s := range mf.Metric {
				s.Label = append([]*dto.LabelPair{label}, s.Label...)
				m.Metric = append(m.Metric, s)
			}
		}
	}
	out := make([]*dto.MetricFamily, 0, len(merged))
	for _, name := range slices.Sorted(maps.Keys(merged)) {
		out = append(out, merged[name])
	}
	return out, nil
}
