package sdktest

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/camd/camd/sdk"
)

// CheckSample checks a plugin's sample config, the one source of its
// defaults: it is a valid config block for out, every key it sets is
// documented in the README at readmePath (a "| `key` |" row), and the
// README shows it verbatim, so what a user reads, what
// `camd-plugin-<name> -sample-config` prints and what the plugin does
// cannot drift apart.
func CheckSample(t *testing.T, out sdk.Output, cameras []string, sample, readmePath string) {
	t.Helper()
	if errs := New(t, out).Validate(cameras, sample); len(errs) > 0 {
		t.Fatalf("the sample config is refused: %v", errs)
	}
	readme, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "```yaml\n"+sample+"```") {
		t.Errorf("%s does not show the sample config verbatim in a ```yaml block; paste it:\n%s", readmePath, sample)
	}
	var keys yaml.Node
	if err := yaml.Unmarshal([]byte(sample), &keys); err != nil {
		t.Fatal(err)
	}
	if len(keys.Content) == 0 {
		return
	}
	for i := 0; i+1 < len(keys.Content[0].Content); i += 2 {
		k := keys.Content[0].Content[i].Value
		if !regexp.MustCompile("\\| `" + regexp.QuoteMeta(k) + "` \\|").Match(readme) {
			t.Errorf("%s has no table row for the key %q", readmePath, k)
		}
	}
}
