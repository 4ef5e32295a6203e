package config

import (
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"
)

// bcrypt of "secret-pw" at cost 4 (cheap for tests).
const pwHash = "$2a$04$6NEvZjIOMiUIcpb.0SmbtejiThTOCXN99hvUEMTHTwtRVLWPVPNpO"

const cams = "cameras:\n  - name: a\n    source: {type: sim}\n  - name: b\n    source: {type: sim}\n"

func TestSecurityErrors(t *testing.T) {
	t.Setenv("CAMD_TEST_SET", "x")
	for _, tt := range []struct{ name, yaml, want string }{
		{"open listen without auth", "http: {listen: 0.0.0.0:8080}\n" + cams,
			"c.yaml:1: http.listen: 0.0.0.0:8080 is reachable from other machines, but camd has no auth configured: add an auth block with users or tokens (see README: Exposing camd on your network), or set auth: {allow_anonymous: true} to serve everyone on your network"},
		{"unset variable", cams + "auth:\n  tokens:\n    - {name: ha, token: \"${CAMD_TEST_UNSET}\"}\n",
			"c.yaml:8: auth.tokens[0].token: environment variable CAMD_TEST_UNSET is not set (set it, or give a default: ${CAMD_TEST_UNSET:-value})"},
		{"short token", cams + "auth:\n  tokens:\n    - {name: ha, token: short}\n",
			"c.yaml:8: auth.tokens[0].token: must be at least 16 characters (e.g. from `openssl rand -hex 24`)"},
		{"bad scope", cams + "auth:\n  tokens:\n    - {name: ha, token: 0123456789abcdef, scope: root}\n",
			`c.yaml:8: auth.tokens[0].scope: unknown scope "root" (want view or admin)`},
		{"token for unknown camera", cams + "auth:\n  tokens:\n    - name: ha\n      token: 0123456789abcdef\n      cameras: [a, c]\n",
			`c.yaml:10: auth.tokens[0].cameras[1]: unknown camera "c"`},
		{"not bcrypt", cams + "auth:\n  users:\n    - {name: alice, password_hash: hunter2}\n",
			"c.yaml:8: auth.users[0].password_hash: not a bcrypt hash ($2a$…, $2b$… or $2y$…): crypto/bcrypt: hashedSecret too short to be a bcrypted password"},
		{"missing hash file", cams + "auth:\n  users:\n    - {name: alice, password_hash_file: nope.txt}\n",
			"c.yaml:8: auth.users[0].password_hash_file: open nope.txt: no such file or directory"},
		{"empty auth", cams + "auth: {}\n", "c.yaml:6: auth: has no users and no tokens (or set allow_anonymous: true for an open camd)"},
		{"bad output auth", cams + "auth: {allow_anonymous: true}\noutputs:\n  - {name: o, plugin: mjpeg, auth: maybe}\n",
			`c.yaml:8: outputs[0].auth: unknown value "maybe" (want required or none)`},
		{"tls without key", cams + "tls: {cert: c.pem}\n", "c.yaml:6: tls: needs both cert and key"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			wantFirstError(t, tt.yaml, tt.want)
		})
	}
}

func TestSecurityFromConfig(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "ha.token"), []byte("token-from-a-file-123\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "alice.hash"), []byte(pwHash+"\n"), 0o600)
	t.Setenv("CAMD_TEST_TOKEN", "token-from-the-env-456")
	t.Setenv("CAMD_TEST_FPS", "12")
	c, err := Parse(filepath.Join(dir, "c.yaml"), []byte(`
http: {listen: "0.0.0.0:8080"}
cameras:
  - name: a
    source: {type: sim, fps: "${CAMD_TEST_FPS}", size: "${CAMD_TEST_SIZE:-320x240}"}
  - name: b
    source: {type: sim}
auth:
  users:
    - {name: alice, password_hash_file: alice.hash}
  tokens:
    - {name: ha, token_file: ha.token, cameras: [a]}
    - {name: ops, token: "${CAMD_TEST_TOKEN}", scope: admin}
    - {name: price, token: "$$-literal-dollar-000"}
outputs:
  - {name: web, plugin: mjpeg}
  - {name: stills, plugin: snapshot, auth: none}
  - name: rtc
    plugin: webrtc
    config:
      ice: {servers: [{urls: ["turn:relay"], username: u, credential: turn-credential-789}]}
      whip: {back: {url: "http://pub:url-password-012@relay/whip?access_token=url-token-345&fps=2"}}
      mqtt_password: plugin-password-678
      listen: "127.0.0.1:8889"
`))
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Cameras[0].Source; s.FPS != 12 || s.Size != "320x240" {
		t.Fatalf("expanded source = %+v", s)
	}
	web, stills := c.Security(0), c.Security(1)
	if !web.AuthRequired || stills.AuthRequired {
		t.Fatalf("auth required: web %v, stills %v", web.AuthRequired, stills.AuthRequired)
	}
	// An open output checks nothing, so it is told no credential: a new
	// token changes nothing for it (a reload does not restart it).
	if len(stills.Users) != 0 || len(stills.Tokens) != 0 {
		t.Fatalf("the open output was given %d users and %d tokens", len(stills.Users), len(stills.Tokens))
	}
	want := map[string][32]byte{
		"ha": sha256.Sum256([]byte("token-from-a-file-123")), "ops": sha256.Sum256([]byte("token-from-the-env-456")),
		"price": sha256.Sum256([]byte("$-literal-dollar-000")),
	}
	for _, tok := range web.Tokens {
		if tok.SHA256 != want[tok.Name] {
			t.Errorf("token %s: wrong digest", tok.Name)
		}
	}
	if len(web.Tokens) != 3 || web.Tokens[0].Scope != "view" || web.Tokens[1].Scope != "admin" || len(web.Tokens[0].Cameras) != 1 {
		t.Fatalf("tokens = %+v", web.Tokens)
	}
	if len(web.Users) != 1 || string(web.Users[0].PasswordBcrypt) != pwHash {
		t.Fatalf("users = %+v", web.Users)
	}
	for _, s := range []string{"token-from-a-file-123", "token-from-the-env-456",
		// in a plugin's config block, whose shape camd does not know
		"turn-credential-789", "url-password-012", "url-token-345", "plugin-password-678"} {
		found := false
		for _, sec := range c.Secrets() {
			found = found || sec == s
		}
		if !found {
			t.Errorf("Secrets() lacks %q: it could be logged", s)
		}
	}
	for _, sec := range c.Secrets() {
		if sec == "127.0.0.1:8889" || sec == "u" || sec == "turn:relay" {
			t.Errorf("Secrets() holds %q, which is no secret", sec)
		}
	}
}
