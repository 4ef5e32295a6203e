package daemon

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/camd/camd/device"
	"github.com/camd/camd/internal/pluginhost"
)

// CameraStatus is a camera's entry in /api/status.
type CameraStatus struct {
	Name           string            `json:"name"`
	Source         string            `json:"source"`
	State          device.State      `json:"state"`            // live, offline, failing, idle (on_demand, unwanted), stopped
	Since          time.Time         `json:"since"`            // when state began
	Reason         string            `json:"reason,omitempty"` // why offline or failing, in plain words
	Frames         uint64            `json:"frames"`
	Placeholders   uint64            `json:"placeholders"` // offline pictures sent
	Dropped        uint64            `json:"dropped"`
	Drops          device.DropCounts `json:"drops"` // dropped by reason: {"corrupt": 3, ...}
	Reconnects     uint64            `json:"reconnects"`
	FPS            float64           `json:"fps"`
	Width          int               `json:"width"`
	Height         int               `json:"height"`
	LastFrameAgeMS int64             `json:"last_frame_age_ms"` // -1 before the first frame
	LastError      string            `json:"last_error,omitempty"`
}

// Status is the body of /api/status.
type Status struct {
	// Config is the file camd runs (absolute), and PID camd's process:
	// `camd reload -config FILE` checks FILE is this one.
	Config     string              `json:"config"`
	PID        int                 `json:"pid"`
	UptimeS    float64             `json:"uptime_s"`
	Goroutines int                 `json:"goroutines"` // camd's own, to spot leaks
	Cameras    []CameraStatus      `json:"cameras"`
	Outputs    []pluginhost.Status `json:"outputs"`
	Reload     *ReloadStatus       `json:"reload,omitempty"` // the last reload, if any
}

// Status collects the state of every camera and output. Error texts pass
// through the redactor: a camera's URL may carry a password.
func (d *Daemon) Status(ctx context.Context) Status {
	now := time.Now()
	d.mu.Lock()
	cams, outs, reload := slices.Clone(d.cameras), slices.Clone(d.outputs), d.reload
	d.mu.Unlock()
	st := Status{Config: d.configPath, PID: os.Getpid(), UptimeS: now.Sub(d.started).Seconds(), Goroutines: runtime.NumGoroutine(), Cameras: []CameraStatus{}, Outputs: make([]pluginhost.Status, len(outs)), Reload: reload}
	for _, r := range cams {
		c := r.cam
		s, _ := r.stats()
		age := int64(-1)
		if !s.LastFrame.IsZero() {
			age = now.Sub(s.LastFrame).Milliseconds()
		}
		st.Cameras = append(st.Cameras, CameraStatus{
			Name: c.Name, Source: r.cfg.Source.Type, State: s.State, Since: s.Since, Reason: s.Reason,
			Frames: s.Frames, Placeholders: s.Placeholders, Dropped: s.Dropped, Drops: s.Drops, Reconnects: s.Reconnects,
			FPS: round2(s.FPS), Width: s.Width, Height: s.Height, LastFrameAgeMS: age, LastError: s.LastError,
		})
	}
	// Ask the plugins in parallel: one slow plugin must not hold up the rest.
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	for i, o := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st.Outputs[i] = o.out.Status(ctx)
		}()
	}
	wg.Wait()
	for i := range st.Cameras {
		st.Cameras[i].LastError = d.redactor.String(st.Cameras[i].LastError)
	}
	for i := range st.Outputs {
		st.Outputs[i].LastError = d.redactor.String(st.Outputs[i].LastError)
		if ps := st.Outputs[i].PluginStatus; len(ps) > 0 {
			st.Outputs[i].PluginStatus = d.redactor.JSON(ps) // it may show the plugin's config
		}
	}
	return st
}

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }

func (d *Daemon) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /api/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(d.Status(r.Context()))
	})
	mux.Handle("GET /metrics", d.metricsHandler())
	mux.HandleFunc("POST /api/reload", func(w http.ResponseWriter, r *http.Request) {
		// A client that gives up (a proxy's or rest_command's timeout)
		// must not cancel the reload half-way: the plugins' checks would
		// fail as "context canceled" and refuse a good config.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 2*launchTimeout)
		defer cancel()
		st := d.Reload(ctx)
		w.Header().Set("Content-Type", "application/json")
		if !st.OK {
			w.WriteHeader(http.StatusUnprocessableEntity)
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(st)
	})
	d.dashboard(mux)
	// Every output's HTTP, on this one port. secure lets these through to
	// the proxy, which checks credentials as the output does.
	mux.Handle(proxyPrefix+"{name}/{rest...}", newOutputProxy(d))
	mux.HandleFunc(proxyPrefix+"{name}", func(w http.ResponseWriter, r *http.Request) {
		// Relative, so it holds under a reverse proxy's path prefix too.
		w.Header().Set("Location", url.PathEscape(r.PathValue("name"))+"/")
		w.WriteHeader(http.StatusMovedPermanently)
	})
	return mux
}

// fromLoopback reports whether r came from this machine.
func fromLoopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
