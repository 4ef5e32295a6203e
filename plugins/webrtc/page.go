package main

import (
	_ "embed"
	"net/http"

	"github.com/camd/camd/sdk/look"
)

//go:embed player.html
var playerHTML string

var (
	// playerTmpl and indexTmpl are the output's pages in camd's look.
	// Links are relative, so they work under camd's /outputs/<name>/ too.
	playerTmpl = look.MustPage("player", playerHTML, nil)
	indexTmpl  = look.MustPage("index", `
{{define "title"}}WebRTC · camd{{end}}
{{define "nav"}}<span class="here">WebRTC</span>{{end}}
{{define "main"}}
<div class="scroll"><table>
<thead><tr><th>camera</th><th>WHEP endpoint</th></tr></thead>
<tbody>
{{range .}}<tr><td><a href="cameras/{{.}}/"><b>{{.}}</b></a></td><td><code>cameras/{{.}}/whep</code></td></tr>
{{else}}<tr><td colspan="2" class="muted">No cameras.</td></tr>{{end}}
</tbody></table></div>
<script>
// Opened with ?token=… (camd's auth): the players need it too.
if (location.search) for (const a of document.querySelectorAll("main a")) a.search = location.search;
</script>
{{end}}
`, nil)
)

func (p *WebRTC) serveIndex(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = indexTmpl.Execute(w, p.cameras())
}

// servePlayer serves the player page for one camera.
func (p *WebRTC) servePlayer(w http.ResponseWriter, r *http.Request) {
	cam := r.PathValue("camera")
	if p.pipeline(cam) == nil {
		http.Error(w, "no such camera", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	_ = playerTmpl.Execute(w, struct{ Camera, Codec string }{cam, p.cfg.Codec})
}
