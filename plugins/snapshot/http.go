package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/camd/camd/sdk"
	"github.com/camd/camd/sdk/look"
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

// stillWriteTimeout drops a client that does not take a still in this
// long, instead of holding its goroutine and connection.
const stillWriteTimeout = 30 * time.Second

// serveSnapshot answers with the camera's newest frame from memory. A plain
// GET answers it while it is at most stale_after old, and 503 otherwise:
// never a stale 200. Freshness can be asked for instead (then stale_after
// does not apply): ?max_age=500ms waits (up to `wait`) for a frame at most
// that old; ?newer_than=SEQ waits for a frame numbered above SEQ, and
// ?newer_than=TIME for one captured after TIME. ?placeholder=1 answers the
// picture camd draws while the camera is offline instead of that 503.
// Only the camera's own frames count as fresh; X-Camera-State says
// whether the camera is live or offline.
func (s *Snapshot) serveSnapshot(w http.ResponseWriter, r *http.Request) {
	c, ok := s.camera(r.PathValue("camera"))
	if !ok {
		http.Error(w, "no such camera", http.StatusNotFound)
		return
	}
	q, err := parseStillQuery(r.URL.Query(), time.Now(), time.Duration(s.cfg.Wait))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	staleAfter := time.Duration(s.cfg.StaleAfter)
	fits := q.fits
	if !q.asks() {
		fits = func(f sdk.Frame) bool { return fresh(f, staleAfter) }
	}
	// Frames of a camera nobody wanted did not come: the newest is old,
	// and this request asks for fresh ones, which may take a moment.
	wasWanted := s.demand == nil || s.demand.Wants(c.name)
	s.demand.HoldFor(c.name, stillHold)
	wait := q.timeout
	if !q.asks() {
		wait = 0
		if !wasWanted {
			wait = wakeWait
		}
	}
	f, ver := c.real.Get()
	found := ver > 0 && fits(f)
	if !found && wait > 0 {
		// A waiting request holds a viewer slot: one client cannot park
		// thousands of them.
		release, ok := s.http.Acquire(w, r)
		if !ok {
			return
		}
		defer release()
		ctx, cancel := context.WithTimeout(r.Context(), wait)
		defer cancel()
		defer context.AfterFunc(c.removed, cancel)()
		for !found {
			nf, nver, err := c.real.Next(ctx, ver)
			if err != nil {
				break
			}
			f, ver, found = nf, nver, fits(nf)
		}
		switch {
		case r.Context().Err() != nil:
			return // the client left, or the plugin is stopping
		case c.removed.Err() != nil:
			http.Error(w, "camera "+strconv.Quote(c.name)+" was removed from this output", http.StatusNotFound)
			return
		}
	}
	if found {
		s.writeStill(w, c, f, c.state(staleAfter))
		return
	}
	if q.placeholder {
		if p := c.placeholder.Load(); p != nil {
			s.writeStill(w, c, *p, "offline")
			return
		}
	}
	var msg string
	switch {
	case ver == 0:
		msg = fmt.Sprintf("camera %q has not delivered a frame yet (offline?)", c.name)
	case q.asks():
		msg = fmt.Sprintf("camera %q: %s within %s (camera offline?)", c.name, q.what, q.timeout)
	case time.Since(f.Captured) < 0:
		msg = fmt.Sprintf("camera %q: its newest frame was captured %s in the future (the clock was set back?)",
			c.name, -time.Since(f.Captured).Round(100*time.Millisecond))
	default:
		msg = fmt.Sprintf("camera %q is offline: its newest frame is %s old (stale_after is %s)",
			c.name, time.Since(f.Captured).Round(100*time.Millisecond), staleAfter)
	}
	if !q.placeholder {
		msg += "; ?placeholder=1 answers camd's offline picture instead"
	}
	w.Header().Set("Retry-After", "1")
	w.Header().Set("X-Camera-State", c.state(staleAfter))
	http.Error(w, msg, http.StatusServiceUnavailable)
}

// writeStill answers f with headers that say what it is.
func (s *Snapshot) writeStill(w http.ResponseWriter, c *camera, f sdk.Frame, state string) {
	c.served.Add(1)
	h := w.Header()
	h.Set("Content-Type", "image/jpeg")
	h.Set("Content-Length", strconv.Itoa(len(f.JPEG)))
	h.Set("Cache-Control", "no-store")
	h.Set("Last-Modified", f.Captured.UTC().Format(http.TimeFormat))
	h.Set("X-Timestamp", unixString(f.Captured))
	h.Set("X-Frame-Seq", strconv.FormatUint(f.Seq, 10))
	h.Set("X-Camera-State", state)
	h.Set("Content-Disposition", `inline; filename="`+c.name+`.jpg"`)
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(stillWriteTimeout))
	_, _ = w.Write(f.JPEG)
}

// maxRequestWait bounds ?timeout=.
const maxRequestWait = 60 * time.Second

// stillQuery is what a snapshot.jpg request asks for.
type stillQuery struct {
	maxAge      time.Duration // with hasMaxAge: frames at most this old
	hasMaxAge   bool
	newer       *newerThan    // frames after this; nil: any
	timeout     time.Duration // how long to wait for a fitting frame
	placeholder bool          // the offline picture instead of a 503
	what        string        // "no frame newer than 500ms", for the 503
}

// parseStillQuery reads max_age, newer_than, timeout and placeholder.
// Errors name the parameter and say what would do.
func parseStillQuery(v url.Values, arrived time.Time, wait time.Duration) (stillQuery, error) {
	q := stillQuery{timeout: wait}
	if s := v.Get("max_age"); s != "" {
		d, err := sdk.ParseDuration(s)
		if err != nil || d < 0 {
			return q, errors.New("bad max_age: want a duration such as 500ms")
		}
		q.maxAge, q.hasMaxAge, q.what = d, true, "no frame newer than "+s
	}
	if s := v.Get("newer_than"); s != "" {
		n, err := parseNewerThan(s, arrived)
		if err != nil {
			return q, fmt.Errorf("bad newer_than: %w", err)
		}
		q.newer, q.what = &n, "no frame newer than "+s
	}
	if s := v.Get("timeout"); s != "" {
		d, err := sdk.ParseDuration(s)
		if err != nil || d < 0 {
			return q, errors.New("bad timeout: want a duration such as 2s")
		}
		q.timeout = min(d, maxRequestWait)
	}
	if s := v.Get("placeholder"); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return q, errors.New("bad placeholder: want 1 or 0")
		}
		q.placeholder = b
	}
	return q, nil
}

// asks reports whether the request asked for freshness itself.
func (q stillQuery) asks() bool { return q.hasMaxAge || q.newer != nil }

// fits reports whether f is what the request asked for.
func (q stillQuery) fits(f sdk.Frame) bool {
	if q.hasMaxAge && !fresh(f, q.maxAge) {
		return false
	}
	return q.newer == nil || q.newer.fits(f)
}

// clockSkew is how far in the future a frame's capture time may be and
// the frame still count as fresh: camd stamps frames on this machine's
// clock, so more means the clock was stepped back after the frame was
// taken, and its age is unknown.
const clockSkew = time.Second

// fresh reports whether f was captured at most maxAge ago. A frame
// "captured in the future" (beyond clockSkew) is not fresh: without
// this, a frame taken before a backward clock step and an outage would
// pass for new until the clock caught up.
func fresh(f sdk.Frame, maxAge time.Duration) bool {
	age := time.Since(f.Captured)
	return age <= maxAge && age >= -clockSkew
}

// newerThan is a parsed newer_than: a frame number or a time.
type newerThan struct {
	bySeq bool
	seq   uint64    // with bySeq: frames numbered above it
	after time.Time // else: frames captured after it
}

// maxUnixSeconds is 9999-12-31T23:59:59Z, the last time RFC 3339 can write.
const maxUnixSeconds = 253402300799

// parseNewerThan reads a newer_than value: digits are a frame number (at
// most 2^64-1); digits with a fraction are unix seconds (up to the year
// 9999, read exactly, without floating point); else an RFC 3339 time, or
// "now" for the request's arrival. Anything out of range is an error, not
// a time that wraps around.
func parseNewerThan(v string, arrived time.Time) (newerThan, error) {
	if v == "now" {
		return newerThan{after: arrived}, nil
	}
	sec, frac, dotted := strings.Cut(v, ".")
	switch {
	case allDigits(v):
		seq, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return newerThan{}, fmt.Errorf("frame number %s is out of range (at most %d)", v, uint64(math.MaxUint64))
		}
		return newerThan{bySeq: true, seq: seq}, nil
	case dotted && allDigits(sec) && allDigits(frac):
		n, err := strconv.ParseInt(sec, 10, 64)
		if err != nil || n > maxUnixSeconds {
			return newerThan{}, fmt.Errorf("unix time %s is out of range (at most %d.0, the year 9999)", v, maxUnixSeconds)
		}
		frac = (frac + "000000000")[:9] // nanoseconds; finer digits are dropped
		ns, _ := strconv.ParseInt(frac, 10, 64)
		return newerThan{after: time.Unix(n, ns)}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return newerThan{}, errors.New("want a frame number, unix seconds with a fraction (1700000000.0), an RFC 3339 time, or now")
	}
	return newerThan{after: t}, nil
}

func (n newerThan) fits(f sdk.Frame) bool {
	if n.bySeq {
		return f.Seq > n.seq
	}
	return f.Captured.After(n.after)
}

// allDigits reports whether s is one or more ASCII digits.
func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// fileRE matches the timelapse's own file names (see frameName; the
// sequence is missing in names older versions wrote), and nothing that
// could leave the camera's folder. Submatches: the sequence, the time.
var fileRE = regexp.MustCompile(`^(?:([0-9]{1,20})_)?([0-9]{8}T[0-9]{6}\.[0-9]{3}Z)\.jpg$`)

type entry struct {
	Name     string    `json:"name"`
	Size     int64     `json:"size"`
	Captured time.Time `json:"captured"`
	URL      string    `json:"url"`
}

func (s *Snapshot) serveList(w http.ResponseWriter, r *http.Request) {
	c, ok := s.camera(r.PathValue("camera"))
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
	c, ok := s.camera(r.PathValue("camera"))
	name := r.PathValue("file")
	if !ok || s.cfg.Dir == "" || !fileRE.MatchString(name) {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	w.Header().Set("Cache-Control", fileCacheControl(r))
	http.ServeFile(w, r, filepath.Join(c.dir, name))
}

// fileCacheControl is how long a timelapse file may be kept: for good, as
// it never changes. A shared cache (a proxy, a CDN) may keep it only when
// the output is public: "public" would let one store a file an
// authenticated user fetched and hand it to anyone. The SDK authenticates
// every request of an output that requires auth (this one declares no
// public paths), so such a request has a principal.
func fileCacheControl(r *http.Request) string {
	if sdk.PrincipalOf(r) != nil {
		return "private, max-age=31536000, immutable"
	}
	return "public, max-age=31536000, immutable"
}

// indexTmpl is the output's page: every camera's newest still (camd's
// offline picture while the camera is offline), refreshed every two
// seconds, in camd's look. Links are relative, so the page works under
// camd's /outputs/<name>/ too.
var indexTmpl = look.MustPage("index", `
{{define "title"}}Stills · camd{{end}}
{{define "nav"}}<span class="here">Stills</span>{{end}}
{{define "main"}}
<div class="grid">
{{range .Names}}<div class="tile" data-camera="{{.}}">
  <a class="view" href="cameras/{{.}}/snapshot.jpg"><img src="cameras/{{.}}/snapshot.jpg?placeholder=1" alt="{{.}}"></a>
  <div class="body"><div class="title"><b>{{.}}</b><span class="small"><a href="cameras/{{.}}/snapshot.jpg">snapshot.jpg</a>{{if $.Timelapse}} · <a href="cameras/{{.}}/timelapse/">timelapse</a>{{end}}</span></div></div>
</div>
{{else}}<p class="muted">No cameras.</p>{{end}}
</div>
<script>
// A new still every two seconds, the next only once the last arrived; a
// ?token=… this page was opened with goes along.
for (let img of document.querySelectorAll(".tile img")) {
  const url = "cameras/" + encodeURIComponent(img.closest(".tile").dataset.camera) + "/snapshot.jpg?placeholder=1" + location.search.replace("?", "&");
  let busy = false;
  setInterval(() => {
    if (busy || document.hidden) return;
    busy = true;
    const next = new Image();
    next.alt = img.alt;
    next.onload = () => { img.replaceWith(next); img = next; busy = false; };
    next.onerror = () => { busy = false; };
    next.src = url + "&t=" + Date.now();
  }, 2000);
}
</script>
{{end}}
`, nil)

func (s *Snapshot) serveIndex(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	indexTmpl.Execute(w, map[string]any{"Names": s.names(), "Timelapse": s.cfg.Dir != ""})
}
