package config

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// FuzzParse: whatever the file holds, Parse returns a config or errors
// that each name the file and say something; it never panics (camd run,
// validate and reload all parse a file a user just edited).
func FuzzParse(f *testing.F) {
	root, err := os.ReadFile("../../config.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		string(root), good,
		"cameras:\n  - name: a\n    source: &s {type: sim}\n  - name: b\n    source: *s\n",
		"outputs:\n  - &o {name: w, plugin: mjpeg}\n  - <<: *o\n    name: v\n",
		"a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n",
		"http: {listen: \"${CAMD_LISTEN:-127.0.0.1:8080}\", token: ${T:?set T}}\n",
		"cameras: [{name: a, source: {type: esp32, url: 'http://u:p@h/'}}]\n",
		"---\ncameras: []\n---\n",
		"cameras:\n\t- name: tab\n",
		"\xef\xbb\xbfcameras: [{name: \"\x00\"}]\n",
		"<<: {a: 1}\n",
		"[1, 2]\n",
		"'unclosed\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const path = "/fuzz/config.yaml"
		c, err := Parse(path, data)
		if err == nil {
			if c == nil {
				t.Fatal("no config and no error")
			}
			return
		}
		var errs Errors
		if !errors.As(err, &errs) || len(errs) == 0 {
			t.Fatalf("error %T %q is not config.Errors", err, err)
		}
		for _, e := range errs {
			if e.File != path || strings.TrimSpace(e.Msg) == "" {
				t.Fatalf("error without its file or message: %#v", e)
			}
		}
	})
}
