package main

import (
	_ "embed"
	"html/template"
	"net/http"
)

//go:embed player.html
var playerHTML string

var (
	playerTmpl = template.Must(template.New("player").Parse(playerHTML))
	indexTmpl  = template.Must(template.New("index").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>camd WebRTC</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:system-ui,sans-serif;margin:1em;background:#111;color:#eee}a{color:#9cf}li{margin:.3em 0}</style>
</head><body><h1>camd WebRTC</h1>
<ul>{{range .}}<li><a href="cameras/{{.}}/">{{.}}</a> · WHEP: <code>cameras/{{.}}/whep</code></li>
{{else}}<li>No cameras.</li>{{end}}</ul>
<script>
// Opened with ?token=… (camd's auth): the players need it too.
if (location.search) for (const a of document.querySelectorAll("a")) a.search = location.search;
</script>
</body></html>
`))
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
