package main

import (
	"maps"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics is the output's Prometheus collector. It reads, at scrape time,
// the counters the pipelines, sessions and HTTP server keep anyway, so the
// metrics cost nothing per frame. camd serves them as
// camd_plugin_webrtc_…{output="…"}.
type metrics struct{ p *WebRTC }

// registerMetrics registers the collector in reg (sdk.Config.Metrics;
// nil when Configure is called outside the SDK).
func (p *WebRTC) registerMetrics(reg prometheus.Registerer) {
	if reg != nil {
		reg.MustRegister(metrics{p})
	}
}

var cameraLabel = []string{"camera"}

var (
	descViewers        = prometheus.NewDesc("webrtc_viewers", "WHEP sessions (viewers) of the camera.", cameraLabel, nil)
	descEncodersOn     = prometheus.NewDesc("webrtc_encoders_running", "Encoders running for the camera: 1 while anyone watches, else 0.", cameraLabel, nil)
	descWHIPConnected  = prometheus.NewDesc("webrtc_whip_connected", "1 while the camera's WHIP publisher is connected to its SFU.", cameraLabel, nil)
	descWHIPConnects   = prometheus.NewDesc("webrtc_whip_connects_total", "Times the camera's WHIP publisher connected to its SFU.", cameraLabel, nil)
	descViewersRefused = prometheus.NewDesc("webrtc_viewers_refused_total", "WHEP offers refused by a viewer cap (max_viewers: 503, max_viewers_per_client: 429).", []string{"reason"}, nil)
)

// cameraCounters are the per-camera counters of pipelineStats.
var cameraCounters = []struct {
	desc *prometheus.Desc
	read func(*pipelineStats) float64
}{
	{prometheus.NewDesc("webrtc_frames_received_total", "Frames camd handed the output for the camera, placeholders included.", cameraLabel, nil),
		func(s *pipelineStats) float64 { return float64(s.framesIn.Load()) }},
	{prometheus.NewDesc("webrtc_placeholder_frames_total", "Placeholder frames received while the camera was offline.", cameraLabel, nil),
		func(s *pipelineStats) float64 { return float64(s.placeholders.Load()) }},
	{prometheus.NewDesc("webrtc_frames_stale_total", "Frames replaced by a newer one before the encoder was free.", cameraLabel, nil),
		func(s *pipelineStats) float64 { return float64(s.framesStale.Load()) }},
	{prometheus.NewDesc("webrtc_frames_encoded_total", "Frames encoded (once for every viewer and the WHIP publisher).", cameraLabel, nil),
		func(s *pipelineStats) float64 { return float64(s.framesEncoded.Load()) }},
	{prometheus.NewDesc("webrtc_frames_capped_total", "Frames skipped to keep to max_fps.", cameraLabel, nil),
		func(s *pipelineStats) float64 { return float64(s.framesCapped.Load()) }},
	{prometheus.NewDesc("webrtc_keyframes_total", "Keyframes encoded.", cameraLabel, nil),
		func(s *pipelineStats) float64 { return float64(s.keyframes.Load()) }},
	{prometheus.NewDesc("webrtc_keyframe_requests_total", "Keyframes asked for by new viewers and by PLI/FIR.", cameraLabel, nil),
		func(s *pipelineStats) float64 { return float64(s.keyRequests.Load()) }},
	{prometheus.NewDesc("webrtc_decode_errors_total", "Frames whose JPEG could not be decoded.", cameraLabel, nil),
		func(s *pipelineStats) float64 { return float64(s.decodeErrors.Load()) }},
	{prometheus.NewDesc("webrtc_encode_errors_total", "Frames the encoder failed on, and encoders that failed to start.", cameraLabel, nil),
		func(s *pipelineStats) float64 { return float64(s.encodeErrors.Load()) }},
	{prometheus.NewDesc("webrtc_encoded_bytes_total", "Bytes the encoder produced, sent on the track every viewer shares (each viewer receives them).", cameraLabel, nil),
		func(s *pipelineStats) float64 { return float64(s.bytes.Load()) }},
	{prometheus.NewDesc("webrtc_decode_seconds_total", "Time spent decoding JPEG frames.", cameraLabel, nil),
		func(s *pipelineStats) float64 { return float64(s.decodeNs.Load()) / 1e9 }},
	{prometheus.NewDesc("webrtc_encode_seconds_total", "Time spent encoding frames.", cameraLabel, nil),
		func(s *pipelineStats) float64 { return float64(s.encodeNs.Load()) / 1e9 }},
	{prometheus.NewDesc("webrtc_encoders_started_total", "Encoders started: with the first viewer, and for a new picture size or frame rate.", cameraLabel, nil),
		func(s *pipelineStats) float64 { return float64(s.encodersStarted.Load()) }},
}

// Describe implements prometheus.Collector.
func (metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descViewers, descEncodersOn, descWHIPConnected, descWHIPConnects, descViewersRefused} {
		ch <- d
	}
	for _, c := range cameraCounters {
		ch <- c.desc
	}
}

// Collect implements prometheus.Collector.
func (m metrics) Collect(ch chan<- prometheus.Metric) {
	p := m.p
	p.mu.Lock()
	pipes := maps.Clone(p.pipes)
	pubs := maps.Clone(p.whip)
	viewers := map[string]int{}
	for _, s := range p.viewers {
		viewers[s.cam]++
	}
	p.mu.Unlock()
	for cam, pl := range pipes {
		ch <- prometheus.MustNewConstMetric(descViewers, prometheus.GaugeValue, float64(viewers[cam]), cam)
		ch <- prometheus.MustNewConstMetric(descEncodersOn, prometheus.GaugeValue, float64(pl.stats.encodersRunning.Load()), cam)
		for _, c := range cameraCounters {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, c.read(&pl.stats), cam)
		}
	}
	for cam, pub := range pubs {
		st := pub.state.snapshot()
		up := 0.0
		if st.State == "connected" {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descWHIPConnected, prometheus.GaugeValue, up, cam)
		ch <- prometheus.MustNewConstMetric(descWHIPConnects, prometheus.CounterValue, float64(st.Connects), cam)
	}
	// Set by Start, which the SDK never runs during a scrape.
	if p.http != nil {
		st := p.http.Stats()
		ch <- prometheus.MustNewConstMetric(descViewersRefused, prometheus.CounterValue, float64(st.ViewersRefused), "max_viewers")
		ch <- prometheus.MustNewConstMetric(descViewersRefused, prometheus.CounterValue, float64(st.ClientRefused), "max_viewers_per_client")
	}
}
