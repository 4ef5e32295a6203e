package main

import (
	"bytes"
	"crypto/sha256"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	pb "github.com/camd/camd/proto/outputv1"
	"github.com/camd/camd/sdk"
	"github.com/camd/camd/sdk/sdktest"
)

// Timelapse files never change, so they may be cached for good; but only
// a public output's may go to shared caches (public): one that requires
// auth answers private, or a proxy could hand a user's stills to anyone.
func TestTimelapseCacheControl(t *testing.T) {
	const token = "view-token-0123456789abcdef"
	const file = "20260102T030405.678Z.jpg"
	authRequired := sdk.Security{AuthRequired: true, Tokens: []sdk.Token{{Name: "viewer", SHA256: sha256.Sum256([]byte(token)), Scope: sdk.ScopeView}}}
	for _, tc := range []struct {
		name   string
		sec    sdk.Security
		query  string // appended to the file's URL
		bearer string // sent as Authorization: Bearer
		status int
		cache  string
	}{
		{name: "public output", status: 200, cache: "public, max-age=31536000, immutable"},
		{name: "auth required, bearer token", sec: authRequired, bearer: token, status: 200, cache: "private, max-age=31536000, immutable"},
		{name: "auth required, token in the URL", sec: authRequired, query: "?token=" + token, status: 200, cache: "private, max-age=31536000, immutable"},
		{name: "auth required, no credential", sec: authRequired, status: 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.MkdirAll(filepath.Join(dir, "cam"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "cam", file), testJPEG, 0o644); err != nil {
				t.Fatal(err)
			}
			h := sdktest.New(t, &Snapshot{})
			resp, err := h.Client.Configure(t.Context(), &pb.ConfigureRequest{
				Output: "stills", Cameras: []string{"cam"}, Security: sdk.SecurityToProto(tc.sec),
				ConfigYaml: []byte("listen: 127.0.0.1:0\ndir: " + dir + "\n"),
			})
			if err != nil || len(resp.Errors) > 0 || resp.StartError != "" || len(resp.Urls) == 0 {
				t.Fatalf("configure: %v %v %q", err, resp.GetErrors(), resp.GetStartError())
			}
			req, err := http.NewRequest(http.MethodGet, strings.TrimSuffix(resp.Urls[0], "/")+"/cameras/cam/timelapse/"+file+tc.query, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.bearer != "" {
				req.Header.Set("Authorization", "Bearer "+tc.bearer)
			}
			got, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer got.Body.Close()
			body, _ := io.ReadAll(got.Body)
			if got.StatusCode != tc.status {
				t.Fatalf("status %d (%s), want %d", got.StatusCode, body, tc.status)
			}
			if tc.status == 200 && !bytes.Equal(body, testJPEG) {
				t.Errorf("got %d bytes, not the file's %d", len(body), len(testJPEG))
			}
			if cc := got.Header.Get("Cache-Control"); tc.cache != "" && cc != tc.cache {
				t.Errorf("Cache-Control %q, want %q", cc, tc.cache)
			} else if tc.cache == "" && strings.Contains(cc, "public") {
				t.Errorf("Cache-Control %q on a refusal", cc)
			}
		})
	}
}
