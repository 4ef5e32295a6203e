package daemon

import (
	"embed"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/camd/camd/sdk/look"
)

// The dashboard's pages: templates in the shared look and one script.
//
//go:embed web
var webFiles embed.FS

var (
	dashboardScript = template.JS(mustRead("web/camd.js"))
	pageFuncs       = template.FuncMap{"script": func() template.JS { return dashboardScript }}
	dashboardPage   = look.MustPage("dashboard", mustRead("web/dashboard.html"), pageFuncs)
	cameraPage      = look.MustPage("camera", mustRead("web/camera.html"), pageFuncs)
)

func mustRead(name string) string {
	b, err := webFiles.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// dashboard adds the daemon's pages to mux: every camera as a live tile
// at /, and a page per camera with a choice of player and its URLs for
// other software at /cameras/<camera>/. The pages show what /api/status
// says and poll it; pictures come through /outputs/ (see outputProxy), so
// a user who logged in to the dashboard is not asked again per output.
func (d *Daemon) dashboard(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		d.servePage(w, r, dashboardPage, d.dashModel(r, ""))
	})
	mux.HandleFunc("GET /cameras/{camera}/{$}", func(w http.ResponseWriter, r *http.Request) {
		m := d.dashModel(r, r.PathValue("camera"))
		if !slices.ContainsFunc(m.Cameras, func(c camView) bool { return c.Name == m.Camera }) {
			http.Error(w, "no camera "+m.Camera, http.StatusNotFound)
			return
		}
		d.servePage(w, r, cameraPage, m)
	})
	mux.HandleFunc("GET /cameras/{camera}", func(w http.ResponseWriter, r *http.Request) {
		u := url.PathEscape(r.PathValue("camera")) + "/"
		if r.URL.RawQuery != "" {
			u += "?" + r.URL.RawQuery
		}
		w.Header().Set("Location", u) // relative: see the output proxy's
		w.WriteHeader(http.StatusMovedPermanently)
	})
}

func (d *Daemon) servePage(w http.ResponseWriter, r *http.Request, page *template.Template, m dashModel) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	// Only camd's own pages may frame these (clickjacking), and links
	// away from them send no Referer (a page URL may hold ?token=).
	h.Set("Content-Security-Policy", "frame-ancestors 'self'")
	h.Set("X-Frame-Options", "SAMEORIGIN")
	h.Set("Referrer-Policy", "no-referrer")
	if err := page.Execute(w, m); err != nil {
		d.log.Debug("dashboard page", "err", err)
	}
}

// dashModel is what a dashboard page shows, and what its script starts
// from: the status as of the page load, and for each camera the outputs
// that serve it, by kind. The script polls /api/status for the rest.
type dashModel struct {
	// Base leads from the page to the daemon's root ("", "../../"), so
	// the pages work under any path prefix a reverse proxy adds.
	Base string `json:"base"`
	// Token is the ?token= the page was opened with, added to every URL
	// the page uses, since a browser sends a token only where it is in
	// the URL (HTTP Basic it remembers by itself).
	Token   string    `json:"token,omitempty"`
	Auth    bool      `json:"auth"`             // camd asks for credentials
	Camera  string    `json:"camera,omitempty"` // the camera page's camera
	Cameras []camView `json:"cameras"`
	Status  Status    `json:"status"`
	// Sig names the cameras and outputs and where they serve; the script
	// reloads the page when /api/status shows another (a reload of the
	// config changed what the page was built from).
	Sig string `json:"sig"`
}

// camView is a camera and the outputs that serve it.
type camView struct {
	Name    string    `json:"name"`
	State   string    `json:"state"`
	MJPEG   *endpoint `json:"mjpeg,omitempty"`  // the first output streaming it
	Still   *endpoint `json:"still,omitempty"`  // the first output with stills of it
	Player  *endpoint `json:"player,omitempty"` // the first WebRTC player page of it
	WHEP    *endpoint `json:"whep,omitempty"`   // that player's WHEP endpoint
	Outputs []string  `json:"outputs"`          // every output that serves it
}

// endpoint is one URL of an output, both through camd's port and on the
// output's own.
type endpoint struct {
	Output string `json:"output"`
	Path   string `json:"path"`   // on the output: /cameras/front/stream.mjpg
	Via    string `json:"via"`    // relative to the page, through camd's port
	Direct string `json:"direct"` // the output's own URL
}

// dashModel builds the model of a page for r from the current status.
// camera is the camera page's, or "" for the dashboard.
func (d *Daemon) dashModel(r *http.Request, camera string) dashModel {
	return newDashModel(d.Status(r.Context()), camera, r.URL.Query().Get("token"), d.guard.Load().auth.Enabled())
}

// newDashModel builds a page's model from st: for each camera, the
// outputs that serve it by kind, and their URLs.
func newDashModel(st Status, camera, token string, auth bool) dashModel {
	m := dashModel{Token: token, Auth: auth, Camera: camera, Status: st, Cameras: []camView{}, Sig: statusSig(st)}
	if camera != "" {
		m.Base = "../../"
	}
	for _, c := range st.Cameras {
		v := camView{Name: c.Name, State: string(c.State), Outputs: []string{}}
		for _, o := range st.Outputs {
			for _, raw := range o.URLs {
				u, err := url.Parse(raw)
				if err != nil {
					continue
				}
				kind, cam := classify(u.Path)
				if cam != c.Name {
					continue
				}
				ep := &endpoint{Output: o.Name, Path: u.Path, Via: m.Base + "outputs/" + url.PathEscape(o.Name) + u.EscapedPath(), Direct: raw}
				switch {
				case kind == "mjpeg" && v.MJPEG == nil:
					v.MJPEG = ep
				case kind == "still" && v.Still == nil:
					v.Still = ep
				case kind == "player" && v.Player == nil:
					v.Player = ep
				case kind == "whep" && v.WHEP == nil:
					v.WHEP = ep
				}
				if !slices.Contains(v.Outputs, o.Name) {
					v.Outputs = append(v.Outputs, o.Name)
				}
			}
		}
		// A WHEP endpoint without a player page of the same output is of
		// no use to the page's player.
		if v.Player != nil && (v.WHEP == nil || v.WHEP.Output != v.Player.Output) {
			v.Player = nil
		}
		m.Cameras = append(m.Cameras, v)
	}
	return m
}

// classify reads what an output URL's path serves, by the conventions
// camd's plugins follow: /cameras/<c>/stream.mjpg (MJPEG),
// /cameras/<c>/snapshot.jpg (stills), /cameras/<c>/ (a player page) and
// /cameras/<c>/whep (WebRTC). A custom plugin that follows them shows up
// on the dashboard too.
func classify(path string) (kind, camera string) {
	rest, ok := strings.CutPrefix(path, "/cameras/")
	if !ok {
		return "", ""
	}
	camera, file, ok := strings.Cut(rest, "/")
	if !ok || camera == "" {
		return "", ""
	}
	switch file {
	case "stream.mjpg":
		return "mjpeg", camera
	case "snapshot.jpg":
		return "still", camera
	case "":
		return "player", camera
	case "whep":
		return "whep", camera
	}
	return "", camera
}

// statusSig is dashModel.Sig. camd.js computes the same from
// /api/status: keep the two in step.
func statusSig(st Status) string {
	var b strings.Builder
	for i, c := range st.Cameras {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(c.Name)
	}
	b.WriteByte('|')
	for i, o := range st.Outputs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(o.Name + "=" + strings.Join(o.URLs, " "))
	}
	return b.String()
}
