// Package look is the one look and feel of camd's web pages: the daemon's
// dashboard and every plugin's own pages share its stylesheet and page
// layout, so a user moving from the dashboard to a plugin's player does
// not change worlds. Everything is embedded: pages load no fonts, scripts
// or styles from anywhere else and work offline. The theme is dark (camera
// pictures read best on it) and the layout works down to a phone's width.
//
// A page is an html/template whose source defines any of these blocks:
//
//	{{define "title"}}front · camd{{end}}      the document title (default "camd")
//	{{define "head"}}<script>…</script>{{end}} more tags for <head>
//	{{define "brand"}}<a href="../">camd</a>{{end}} the bar's first item (default: "camd")
//	{{define "nav"}}<a href="x">x</a>{{end}}   the bar's links, after the brand
//	{{define "main"}}…{{end}}                  the page's content
//
// Links in pages should be relative ("cameras/front/", "../../"): camd
// serves each plugin's pages under /outputs/<name>/ as well as on the
// plugin's own port, and a user may put all of it behind a reverse proxy
// under a path of their own.
package look

import (
	_ "embed"
	"html/template"
)

//go:embed look.css
var css string

// CSS returns the shared stylesheet, for a page that cannot use Page.
func CSS() template.CSS { return template.CSS(css) }

// layout is the frame every page shares. The stylesheet is inlined: a page
// is one request, whatever path prefix it is served under.
const layout = `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="dark">
<link rel="icon" href="data:,">
<title>{{block "title" .}}camd{{end}}</title>
<style>{{lookCSS}}</style>
{{block "head" .}}{{end}}
</head><body>
<header class="bar">{{block "brand" .}}<span class="brand">camd</span>{{end}}{{block "nav" .}}{{end}}</header>
<main>{{block "main" .}}{{end}}</main>
</body></html>
`

// Page returns a page template named name: the shared layout with the
// blocks that body defines (see the package comment). funcs, if not nil,
// are added to the template's functions before body is parsed.
func Page(name, body string, funcs template.FuncMap) (*template.Template, error) {
	t := template.New(name).Funcs(template.FuncMap{"lookCSS": CSS})
	if funcs != nil {
		t = t.Funcs(funcs)
	}
	t, err := t.Parse(layout)
	if err != nil {
		return nil, err
	}
	return t.Parse(body)
}

// MustPage is Page for templates in package variables: it panics on an
// error, which is a bug in the program's own template.
func MustPage(name, body string, funcs template.FuncMap) *template.Template {
	t, err := Page(name, body, funcs)
	if err != nil {
		panic("look: page " + name + ": " + err.Error())
	}
	return t
}
