package look

import (
	"html/template"
	"strings"
	"testing"
)

func TestPage(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		data       any
		want       []string // substrings of the page, in this order
		not        []string
	}{
		{
			name: "defaults",
			body: `{{define "main"}}<p>hello</p>{{end}}`,
			want: []string{`<meta name="viewport" content="width=device-width, initial-scale=1">`, "<title>camd</title>", "<style>", "--bg:", "</style>", `<span class="brand">camd</span>`, "<main><p>hello</p></main>"},
		},
		{
			name: "every block",
			body: `{{define "title"}}{{.}} · camd{{end}}{{define "head"}}<script src="x.js"></script>{{end}}` +
				`{{define "brand"}}<a class="brand" href="../">camd</a>{{end}}{{define "nav"}}<a href="a/">a</a>{{end}}{{define "main"}}<b>{{.}}</b>{{end}}`,
			data: "front",
			want: []string{"<title>front · camd</title>", `<script src="x.js"></script>`, `<a class="brand" href="../">camd</a><a href="a/">a</a></header>`, "<b>front</b>"},
			not:  []string{`<span class="brand">`},
		},
		{
			name: "data is escaped",
			body: `{{define "main"}}<p>{{.}}</p>{{end}}`,
			data: `<script>alert(1)</script>`,
			want: []string{"<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>"},
			not:  []string{"<script>alert"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmpl, err := Page("p", tc.body, nil)
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			if err := tmpl.Execute(&b, tc.data); err != nil {
				t.Fatal(err)
			}
			page, at := b.String(), 0
			for _, w := range tc.want {
				i := strings.Index(page[at:], w)
				if i < 0 {
					t.Fatalf("page lacks %q after offset %d:\n%s", w, at, page)
				}
				at += i + len(w)
			}
			for _, n := range tc.not {
				if strings.Contains(page, n) {
					t.Errorf("page has %q:\n%s", n, page)
				}
			}
		})
	}
}

func TestPageFuncs(t *testing.T) {
	tmpl := MustPage("p", `{{define "main"}}{{shout .}}{{end}}`, template.FuncMap{"shout": strings.ToUpper})
	var b strings.Builder
	if err := tmpl.Execute(&b, "hi"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "<main>HI</main>") {
		t.Errorf("funcs not applied:\n%s", b.String())
	}
	if _, err := Page("bad", `{{define "main"}}{{nosuch}}{{end}}`, nil); err == nil {
		t.Error("Page accepted an unknown function")
	}
}

// The stylesheet is inlined into <style>: it must not be able to end the
// element early, and its blocks must balance, or every later rule is lost.
func TestCSS(t *testing.T) {
	c := string(CSS())
	if strings.Contains(strings.ToLower(c), "</style") {
		t.Error("stylesheet contains </style")
	}
	if strings.Count(c, "{") != strings.Count(c, "}") {
		t.Errorf("unbalanced braces: %d { vs %d }", strings.Count(c, "{"), strings.Count(c, "}"))
	}
	for _, need := range []string{"color-scheme: dark", "@media (max-width:", ".grid", ".tile", ".badge.live", ".badge.offline", ".badge.failing", ".copy"} {
		if !strings.Contains(c, need) {
			t.Errorf("stylesheet lacks %q", need)
		}
	}
	for _, remote := range []string{"http://", "https://", "@import", "url("} {
		if strings.Contains(c, remote) {
			t.Errorf("stylesheet loads something (%q): pages must work offline", remote)
		}
	}
}
