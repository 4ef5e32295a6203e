package sdktest

import (
	"strings"
	"testing"

	"github.com/camd/camd/sdk"
)

// CheckConfig validates configYAML with out over real gRPC, as `camd
// validate` does, and fails the test unless the errors match want: each
// a prefix of one error's "key: message", in order. No want: no errors.
func CheckConfig(t *testing.T, out sdk.Output, cameras []string, configYAML string, want ...string) {
	t.Helper()
	errs := New(t, out).Validate(cameras, configYAML)
	if len(errs) != len(want) {
		t.Fatalf("errors = %v, want %v", errs, want)
	}
	for i, e := range errs {
		if !strings.HasPrefix(e.Error(), want[i]) {
			t.Fatalf("error %d = %q, want prefix %q", i, e, want[i])
		}
	}
}
