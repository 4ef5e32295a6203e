package sdktest

import (
	"bytes"
	"context"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	pb "github.com/camd/camd/proto/outputv1"
)

// Metric types, for MetricWant.
const (
	Gauge   = dto.MetricType_GAUGE
	Counter = dto.MetricType_COUNTER
)

// MetricWant is a sample a scrape must hold: its family's name and type,
// one label pair, and a condition on its value.
type MetricWant struct {
	Name  string
	Type  dto.MetricType
	Label []string // name, value; nil: the sample without labels
	OK    func(float64) bool
}

// Eq, AtLeast and Above are conditions for MetricWant.OK.
func Eq(want float64) func(float64) bool     { return func(v float64) bool { return v == want } }
func AtLeast(min float64) func(float64) bool { return func(v float64) bool { return v >= min } }
func Above(floor float64) func(float64) bool { return func(v float64) bool { return v > floor } }

// Metrics returns the output's metrics as camd gets them: the text of the
// SDK's Metrics call, parsed as camd parses it.
func (h *Harness) Metrics() map[string]*dto.MetricFamily {
	h.t.Helper()
	resp, err := h.Client.Metrics(context.Background(), &pb.MetricsRequest{})
	if err != nil {
		h.t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(resp.Text))
	if err != nil {
		h.t.Fatalf("metrics: %v\n%s", err, resp.Text)
	}
	return fams
}

// CheckMetrics checks every want, and the names: each family of the
// plugin's own (not the SDK's go_ and process_ ones) starts with prefix,
// is a counter exactly when it ends in _total, has help, and is wanted
// (tested) by one of wants.
func CheckMetrics(t testing.TB, fams map[string]*dto.MetricFamily, prefix string, wants []MetricWant) {
	t.Helper()
	CheckWants(t, fams, wants)
	tested := map[string]bool{}
	for _, w := range wants {
		tested[w.Name] = true
	}
	if fams["go_goroutines"] == nil || fams["process_resident_memory_bytes"] == nil {
		t.Error("the SDK's Go runtime and process metrics are missing")
	}
	for name, f := range fams {
		if strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") {
			continue
		}
		if !strings.HasPrefix(name, prefix) {
			t.Errorf("metric %s lacks the plugin's prefix %s", name, prefix)
		}
		if (f.GetType() == Counter) != strings.HasSuffix(name, "_total") {
			t.Errorf("metric %s is a %s: counters, and only they, end in _total", name, f.GetType())
		}
		if f.GetHelp() == "" {
			t.Errorf("metric %s has no help", name)
		}
		if !tested[name] {
			t.Errorf("metric %s is not tested", name)
		}
	}
}

// CheckWants checks that fams hold every want.
func CheckWants(t testing.TB, fams map[string]*dto.MetricFamily, wants []MetricWant) {
	t.Helper()
	for _, w := range wants {
		f := fams[w.Name]
		if f == nil {
			t.Errorf("no metric %s", w.Name)
			continue
		}
		if f.GetType() != w.Type {
			t.Errorf("%s is a %s, want a %s", w.Name, f.GetType(), w.Type)
		}
		v, ok := Sample(fams, w.Name, w.Label)
		if !ok {
			t.Errorf("%s has no sample labelled %q", w.Name, w.Label)
		} else if !w.OK(v) {
			t.Errorf("%s%q = %v", w.Name, w.Label, v)
		}
	}
}

// Sample returns the value of the sample of family name that has the
// label pair (name, value; nil: the sample without labels), and whether
// there is one.
func Sample(fams map[string]*dto.MetricFamily, name string, label []string) (float64, bool) {
	for _, m := range fams[name].GetMetric() {
		match := len(label) == 0 && len(m.Label) == 0
		for _, l := range m.Label {
			match = match || len(label) == 2 && l.GetName() == label[0] && l.GetValue() == label[1]
		}
		if match {
			return m.GetGauge().GetValue() + m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}
