package config

import "testing"

// expandString gives ${...} the shell's meaning and refuses what it does
// not know rather than keeping it as text.
func TestExpandString(t *testing.T) {
	env := map[string]string{"SET": "v", "EMPTY": ""}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	const unsupported = ": unsupported ${...} form; use ${VAR}, ${VAR:-default} or ${VAR:?message} ($$ is a $)"
	tests := []struct{ in, want, err string }{
		{in: "${SET}", want: "v"},
		{in: "a-${SET}-b", want: "a-v-b"},
		{in: "${UNSET}", err: "environment variable UNSET is not set (set it, or give a default: ${UNSET:-value})"},
		{in: "${EMPTY}", err: "environment variable EMPTY is empty (set it, or give a default: ${EMPTY:-value})"},
		{in: "${UNSET:-d}", want: "d"},
		{in: "${EMPTY:-d}", want: "d"},
		{in: "${SET:-d}", want: "v"},
		{in: "${UNSET-d}", want: "d"},
		{in: "${EMPTY-d}", want: ""},
		{in: "${UNSET:-$2y$10$x}", want: "$2y$10$x"},
		{in: "${UNSET:?set it}", err: "environment variable UNSET is not set: set it"},
		{in: "${EMPTY:?set it}", err: "environment variable EMPTY is empty: set it"},
		{in: "${SET:?set it}", want: "v"},
		{in: "${UNSET?}", err: "environment variable UNSET is not set: required"},
		{in: "${EMPTY?set it}", want: ""},
		{in: "$$", want: "$"},
		{in: "$${SET}", want: "${SET}"},
		{in: "$2y$10$abc", want: "$2y$10$abc"},
		{in: "$SET", want: "$SET"},
		{in: "cost $", want: "cost $"},
		{in: "${SET:d}", err: `"${SET:d}"` + unsupported},
		{in: "${ SET }", err: `"${ SET }"` + unsupported},
		{in: "${1X}", err: `"${1X}"` + unsupported},
		{in: "${}", err: `"${}"` + unsupported},
		{in: "x${SET", err: `"${SET"` + unsupported},
		{in: "${UNSET:-${SET}}", err: `"${UNSET:-${SET}"` + unsupported},
	}
	for _, tt := range tests {
		got, _, err := expandString(tt.in, lookup)
		switch {
		case tt.err != "" && (err == nil || err.Error() != tt.err):
			t.Errorf("%s: error %v, want %s", tt.in, err, tt.err)
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("%s = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// A reference error names the file, line and key, wherever it is.
func TestExpandEnvPlacesErrors(t *testing.T) {
	y := "auth:\n  tokens:\n    - name: ha\n      token: ${CAMD_TEST_NOPE:?put it in /etc/camd/env}\n      scope: admin\ncameras:\n  - name: a\n    source: {type: sim}\n"
	_, err := Parse("c.yaml", []byte(y))
	want := "c.yaml:4: auth.tokens[0].token: environment variable CAMD_TEST_NOPE is not set: put it in /etc/camd/env"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %s", err, want)
	}
}
