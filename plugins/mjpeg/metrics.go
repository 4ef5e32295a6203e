package main

import "github.com/prometheus/client_golang/prometheus"

// metrics is the output's Prometheus collector. It reads, at scrape time,
// the counters the feeds and the HTTP server keep anyway, so the metrics
// cost nothing per frame. camd serves them as camd_plugin_mjpeg_…{output="…"}.
type metrics struct{ m *MJPEG }

// registerMetrics registers the collector in reg (sdk.Config.Metrics;
// nil when Configure is called outside the SDK).
func (m *MJPEG) registerMetrics(reg prometheus.Registerer) {
	if reg != nil {
		reg.MustRegister(metrics{m})
	}
}

var cameraLabel = []string{"camera"}

var (
	descViewers  = prometheus.NewDesc("mjpeg_viewers", "Streams of the camera being watched.", cameraLabel, nil)
	descReceived = prometheus.NewDesc("mjpeg_frames_received_total", "Frames camd handed the output for the camera, placeholders included.", cameraLabel, nil)
	descSent     = prometheus.NewDesc("mjpeg_frames_sent_total", "Frames sent to the camera's viewers, summed over viewers.", cameraLabel, nil)
	descSkipped  = prometheus.NewDesc("mjpeg_frames_skipped_total", "Camera frames viewers skipped because they were slower than the camera, summed over viewers.", cameraLabel, nil)
	descStalled  = prometheus.NewDesc("mjpeg_viewers_stalled_total", "Viewers disconnected for taking longer than write_timeout to accept a frame.", nil, nil)
	descRefused  = prometheus.NewDesc("mjpeg_viewers_refused_total", "Streams refused by a viewer cap (max_viewers: 503, max_viewers_per_client: 429).", []string{"reason"}, nil)
)

// Describe implements prometheus.Collector.
func (metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descViewers, descReceived, descSent, descSkipped, descStalled, descRefused} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c metrics) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	for cam, fd := range m.feedMap() {
		ch <- prometheus.MustNewConstMetric(descViewers, prometheus.GaugeValue, float64(fd.viewers.Load()), cam)
		ch <- prometheus.MustNewConstMetric(descReceived, prometheus.CounterValue, float64(fd.frames.Load()), cam)
		ch <- prometheus.MustNewConstMetric(descSent, prometheus.CounterValue, float64(fd.sent.Load()), cam)
		ch <- prometheus.MustNewConstMetric(descSkipped, prometheus.CounterValue, float64(fd.skipped.Load()), cam)
	}
	ch <- prometheus.MustNewConstMetric(descStalled, prometheus.CounterValue, float64(m.stalled.Load()))
	// Set by Start, which the SDK never runs during a scrape.
	if m.http != nil {
		st := m.http.Stats()
		ch <- prometheus.MustNewConstMetric(descRefused, prometheus.CounterValue, float64(st.ViewersRefused), "max_viewers")
		ch <- prometheus.MustNewConstMetric(descRefused, prometheus.CounterValue, float64(st.ClientRefused), "max_viewers_per_client")
	}
}
