package sdk

import (
	"bytes"
	"strings"
	"testing"
)

// A plugin run by hand answers its flags instead of go-plugin's notice.
func TestByHand(t *testing.T) {
	info := Info{Name: "demo", Version: "1.2.3", SampleConfig: "listen: 127.0.0.1:9999\n"}
	for _, tc := range []struct {
		args     []string
		code     int
		out, err string
	}{
		{[]string{"-version"}, 0, "camd-plugin-demo 1.2.3 (plugin contract v1)", ""},
		{[]string{"-sample-config"}, 0, "listen: 127.0.0.1:9999", ""},
		{nil, 2, "", "camd starts it for an output with\nplugin: demo"},
		{[]string{"-h"}, 0, "", "-sample-config"},
		{[]string{"-nope"}, 2, "", "flag provided but not defined"},
	} {
		var out, errb bytes.Buffer
		if code := byHand(info, tc.args, &out, &errb); code != tc.code || !strings.Contains(out.String(), tc.out) || !strings.Contains(errb.String(), tc.err) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit %d with %q / %q", tc.args, code, out.String(), errb.String(), tc.code, tc.out, tc.err)
		}
	}
}
