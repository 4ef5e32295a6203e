package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/camd/camd/sdk"
)

// Handler returns the plugin's HTTP routes.
func (s *Snapshot) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.serveIndex)
	mux.HandleFunc("GET /cameras/{camera}/snapshot.jpg", s.serveSnapshot)
	mux.HandleFunc("GET /cameras/{camera}/timelapse/{$}", s.serveList)
	mux.HandleFunc("GET /cameras/{camera}/timelapse/{file}", s.serveFile)
	return mux
}

// serveSnapshot answers with the newest frame from memory. Freshness is
// explicit: ?max_age=500ms waits (up to `wait`) for a frame at most that
// old; ?newer_than=SEQ waits for a frame numbered above SEQ, and
// ?newer_than=TIME (RFC 3339, unix seconds with a fraction, or "now") for
// one captured after TIME. Without a frame that qualifies: 503.
func (s *Snapshot) serveSnapshot(w http.ResponseWriter, r *http.Request) {
	c, ok := s.cams[r.PathValue("camera")]
	if !ok {
		http.Error(w, "no such camera", http.StatusNotFound)
		return
	}
	arrived := time.Now()
	q := r.URL.Query()
	var want func(sdk.Frame) bool
	var what string
	if v := q.Get("max_age"); v != "" {
		d, err := sdk.ParseDuration(v)
		if err != nil || d < 0 {
			http.Error(w, "bad max_age: want a duration such as 500ms", http.StatusBadRequest)
			return
		}
		want = func(f sdk.Frame) bool { return time.Since(f.Captured) <= d }
		what = "no frame newer than " + v
	}
	if v := q.Get("newer_than"); v != "" {
		pred, err := newerThan(v, arrived)
		if err != nil {
			http.Error(w, "bad newer_than: "+err.Error(), http.StatusBadRequest)
			return
		}
		prev := want
		want = func(f sdk.Frame) bool { return pred(f) && (prev == nil || prev(f)) }
		what = "no frame newer than " + v
	}
	timeout := time.Duration(s.cfg.Wait)
	if v := q.Get("timeout"); v != "" {
		d, err := sdk.ParseDuration(v)
		if err != nil || d < 0 {
			http.Error(w, "bad timeout", http.StatusBadRequest)
			return
		}
		timeout = min(d, 60*time.Second)
	}

	f, ver := c.latest.Get()
	if ver == 0 || (want != nil && !want(f)) {
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		var err error
		for ver == 0 || (want != nil && !want(f)) {
			if f, ver, err = c.latest.Next(ctx, ver); err != nil {
				break
			}
		}
		if err != nil {
			if r.Context().Err() != nil {
				return
			}
			msg := fmt.Sprintf("camera %q: %s within %s (camera offline?)", c.name, what, timeout)
			if what == "" {
				msg = fmt.Sprintf("camera %q has not delivered a frame yet (offline?)", c.name)
			}
			w.Header().Set("Retry-After", "1")
			http.Error(w, msg, http.StatusServiceUnavailable)
			return
		}
	}
	c.served.Add(1)
	h := w.Header()
	h.Set("Content-Type", "image/jpeg")
	h.Set("Content-Length", strconv.Itoa(len(f.JPEG)))
	h.Set("Cache-Control", "no-store")
	h.Set("Last-Modified", f.Captured.UTC().Format(http.TimeFormat))
	h.Set("X-Timestamp", unixString(f.Captured))
	h.Set("X-Frame-Seq", strconv.FormatUint(f.Seq, 10))
	h.Set("Content-Disposition", `inline; filename="`+c.name+`.jpg"`)
	h.Set("Access-Control-Allow-Origin", "*")
	w.Write(f.JPEG)
}

// newerThan parses a newer_than value: digits are a frame number;
// otherwise a time.
func newerThan(v string, arrived time.Time) (func(sdk.Frame) bool, error) {
	if v == "now" {
		return func(f sdk.Frame) bool { return f.Captured.After(arrived) }, nil
	}
	if seq, err := strconv.ParseUint(v, 10, 64); err == nil {
		return func(f sdk.Frame) bool { return f.Seq > seq }, nil
	}
	var t time.Time
	if sec, err := strconv.ParseFloat(v, 64); err == nil {
		t = time.UnixMicro(int64(sec * 1e6))
	} else if t, err = time.Parse(time.RFC3339Nano, v); err != nil {
		return nil, errors.New("want a frame number, unix seconds with a fraction (1700000000.0), an RFC 3339 time, or now")
	}
	return func(f sdk.Frame) bool { return f.Captured.After(t) }, nil
}

// fileRE matches the timelapse's own file names, and nothing that could
// leave the camera's folder.
var fileRE = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}\.[0-9]{3}Z\.jpg$`)

type entry struct {
	Name     string    `json:"name"`
	Size     int64     `json:"size"`
	Captured time.Time `json:"captured"`
	URL      string    `json:"url"`
}

func (s *Snapshot) serveList(w http.ResponseWriter, r *http.Request) {
	c, ok := s.cams[r.PathValue("camera")]
	if !ok || s.cfg.Dir == "" {
		http.Error(w, "no timelapse for this camera", http.StatusNotFound)
		return
	}
	files, err := listFrames(c.dir)
	if err != nil {
		http.Error(w, "listing timelapse: "+err.Error(), http.StatusInternalServerError)
		return
	}
	out := make([]entry, 0, len(files))
	for _, f := range files {
		out = append(out, entry{Name: f.name, Size: f.size, Captured: f.captured, URL: f.name})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(map[string]any{"camera": c.name, "every": time.Duration(s.cfg.Every).String(), "frames": out})
}

func (s *Snapshot) serveFile(w http.ResponseWriter, r *http.Request) {
	c, ok := s.cams[r.PathValue("camera")]
	name := r.PathValue("file")
	if !ok || s.cfg.Dir == "" || !fileRE.MatchString(name) {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	http.ServeFile(w, r, filepath.Join(c.dir, name))
}

var indexTmpl = template.Must(template.New("index").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>camd snapshots</title>
<style>body{font-family:system-ui,sans-serif;margin:1em}figure{display:inline-block;margin:.5em}img{max-width:320px}</style>
</head><body>
{{range .Names}}<figure><a href="cameras/{{.}}/snapshot.jpg"><img src="cameras/{{.}}/snapshot.jpg" alt="{{.}}"></a>
<figcaption>{{.}}{{if $.Timelapse}} · <a href="cameras/{{.}}/timelapse/">timelapse</a>{{end}}</figcaption></figure>
{{end}}</body></html>
`))

func (s *Snapshot) serveIndex(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	indexTmpl.Execute(w, map[string]any{"Names": s.names(), "Timelapse": s.cfg.Dir != ""})
}
