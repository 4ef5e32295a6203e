package daemon

import (
	"slices"
	"testing"
)

// TestPluginEnv: a plugin gets camd's environment without the variables
// holding one of camd's secrets.
func TestPluginEnv(t *testing.T) {
	env := []string{"PATH=/usr/bin", "CAMD_ADMIN_TOKEN=tok-0123456789abcdef", "HA=x", "EMPTY=", "NOEQUALS",
		"CAM_URL_PASS=hunter22", "LANG=C.UTF-8"}
	secrets := []string{"tok-0123456789abcdef", "hunter22", ""}
	got := pluginEnv(env, secrets)
	want := []string{"PATH=/usr/bin", "HA=x", "EMPTY=", "NOEQUALS", "LANG=C.UTF-8"}
	if !slices.Equal(got, want) {
		t.Errorf("pluginEnv = %q, want %q", got, want)
	}
}
