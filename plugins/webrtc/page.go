package main

import (
	_ "embed"
	"html/template"
	"maps"
	"net/http"
	"slices"
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
</body></html>
`))
)

func (p *WebRTC) serveIndex(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = indexTmpl.Execute(w, slices.Sorted(maps.Keys(p.pipes)))
}

// servePlayer serves the player page for one camera.
func (p *WebRTC) servePlayer(w http.ResponseWriter, r *http.Request) {
	cam := r.PathValue("camera")
	if _, ok := p.pipes[cam]; !ok {
		http.Error(w, "no such camera", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	_ = playerTmpl.Execute(w, struct{ Camera, Codec string }{cam, p.cfg.Codec})
}
