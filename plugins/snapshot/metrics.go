package main

import "github.com/prometheus/client_golang/prometheus"

// metrics is the output's Prometheus collector. It reads, at scrape time,
// the counters the cameras and the HTTP server keep anyway, so the metrics
// cost nothing per frame or request. camd serves them as
// camd_plugin_snapshot_…{output="…"}.
type metrics struct{ s *Snapshot }

// registerMetrics registers the collector in reg (sdk.Config.Metrics;
// nil when Configure is called outside the SDK).
func (s *Snapshot) registerMetrics(reg prometheus.Registerer) {
	if reg != nil {
		reg.MustRegister(metrics{s})
	}
}

var cameraLabel = []string{"camera"}

var (
	descServed     = prometheus.NewDesc("snapshot_stills_served_total", "Stills of the camera answered (200).", cameraLabel, nil)
	descWritten    = prometheus.NewDesc("snapshot_timelapse_frames_written_total", "Timelapse files written for the camera.", cameraLabel, nil)
	descSkippedLow = prometheus.NewDesc("snapshot_timelapse_skipped_low_disk_total", "Timelapse frames not written because free space was below min_free.", cameraLabel, nil)
	descWriteErrs  = prometheus.NewDesc("snapshot_timelapse_write_errors_total", "Timelapse files that could not be written.", cameraLabel, nil)
	descLowDisk    = prometheus.NewDesc("snapshot_timelapse_low_disk", "1 while the camera's timelapse is paused for free space below min_free.", cameraLabel, nil)
	descRefused    = prometheus.NewDesc("snapshot_requests_refused_total", "Requests that would wait for a frame, refused over max_viewers_per_client (429).", nil, nil)
)

// Describe implements prometheus.Collector.
func (metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descServed, descWritten, descSkippedLow, descWriteErrs, descLowDisk, descRefused} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m metrics) Collect(ch chan<- prometheus.Metric) {
	s := m.s
	for name, c := range s.cameras() {
		low := 0.0
		if c.lowDisk.Load() {
			low = 1
		}
		ch <- prometheus.MustNewConstMetric(descServed, prometheus.CounterValue, float64(c.served.Load()), name)
		ch <- prometheus.MustNewConstMetric(descWritten, prometheus.CounterValue, float64(c.written.Load()), name)
		ch <- prometheus.MustNewConstMetric(descSkippedLow, prometheus.CounterValue, float64(c.skippedLow.Load()), name)
		ch <- prometheus.MustNewConstMetric(descWriteErrs, prometheus.CounterValue, float64(c.writeErrs.Load()), name)
		ch <- prometheus.MustNewConstMetric(descLowDisk, prometheus.GaugeValue, low, name)
	}
	// Set by Start, which the SDK never runs during a scrape.
	if s.http != nil {
		ch <- prometheus.MustNewConstMetric(descRefused, prometheus.CounterValue, float64(s.http.Stats().ClientRefused))
	}
}
