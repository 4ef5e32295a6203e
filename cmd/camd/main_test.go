package main

import (
	"bytes"
	"strings"
	"testing"
)

// The command line, as a person meets it.
func TestCommandLine(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		code     int
		out, err string // substrings of stdout and stderr
	}{
		{args: []string{"version"}, code: 0, out: "camd dev (plugin contract v1)"},
		{args: []string{"-version"}, code: 0, out: "camd dev (plugin contract v1)"},
		{args: []string{"run", "-version"}, code: 0, out: "camd dev"},
		{args: []string{"help"}, code: 0, out: "commands:"},
		{args: []string{"-h"}, code: 0, err: "-config string"},
		{args: []string{"validate", "-h"}, code: 0, err: "usage: camd validate [flags]"},
		{args: []string{"bogus"}, code: 2, err: `camd: unknown command "bogus"`},
		{args: []string{"run", "extra"}, code: 2, err: `unexpected argument "extra"`},
		{args: []string{"run", "-nope"}, code: 2, err: "flag provided but not defined: -nope"},
		{args: []string{"run", "-config", "/nonexistent/camd.yaml"}, code: 1, err: "no such file or directory"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(tc.args, &out, &errb); code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out.String(), errb.String())
			}
			if !strings.Contains(out.String(), tc.out) || !strings.Contains(errb.String(), tc.err) {
				t.Fatalf("stdout %q lacks %q, or stderr %q lacks %q", out.String(), tc.out, errb.String(), tc.err)
			}
		})
	}
}
