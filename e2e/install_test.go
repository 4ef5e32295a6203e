package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// makeInstall runs `make install` with args, installing what make build
// put in bin (building it first, the first time).
func makeInstall(t *testing.T, bin string, args ...string) string {
	t.Helper()
	if _, err := os.Stat(filepath.Join(bin, "camd")); err != nil {
		build := exec.Command("make", "-s", "build", "BIN="+bin)
		build.Dir = ".."
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("make build: %v\n%s", err, out)
		}
	}
	cmd := exec.Command("make", append([]string{"-s", "install", "BIN=" + bin}, args...)...)
	cmd.Dir = ".."
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make install %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// make install puts a working camd in a prefix: the sample config it
// installs validates against the plugins it installed, the systemd unit
// names that prefix's paths and passes systemd-analyze, and installing
// again keeps the config a user edited. DESTDIR stages the same for a
// package.
func TestInstall(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "build") // built once: the later installs find it up to date

	// install only copies: with nothing built it says what to run, and
	// builds nothing (as root, go is often not on PATH).
	t.Run("not built", func(t *testing.T) {
		cmd := exec.Command("make", "-s", "install", "BIN="+filepath.Join(dir, "empty"), "PREFIX="+filepath.Join(dir, "never"))
		cmd.Dir = ".."
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "run make build first") {
			t.Errorf("make install with nothing built: %v\n%s", err, out)
		}
		if _, err := os.Stat(filepath.Join(dir, "never")); err == nil {
			t.Error("make install with nothing built created the prefix")
		}
	})

	t.Run("prefix", func(t *testing.T) {
		prefix := filepath.Join(dir, "prefix")
		makeInstall(t, bin, "PREFIX="+prefix)

		config := filepath.Join(prefix, "etc/camd/config.yaml")
		unit := filepath.Join(prefix, "lib/systemd/system/camd.service")
		for _, f := range []string{"bin/camd", "lib/camd/camd-plugin-mjpeg", "lib/camd/camd-plugin-snapshot", "lib/camd/camd-plugin-webrtc"} {
			if fi, err := os.Stat(filepath.Join(prefix, f)); err != nil || fi.Mode()&0o111 == 0 {
				t.Errorf("%s is not an installed executable: %v", f, err)
			}
		}

		out, err := exec.Command(filepath.Join(prefix, "bin/camd"), "validate", "-config", config).CombinedOutput()
		if err != nil {
			t.Errorf("camd validate on the installed config: %v\n%s", err, out)
		}
		if want := "plugin_dir: " + filepath.Join(prefix, "lib/camd"); !strings.Contains(readFile(t, config), want) {
			t.Errorf("installed config lacks %q", want)
		}

		u := readFile(t, unit)
		for _, want := range []string{
			"ExecStart=" + prefix + "/bin/camd run -config " + config,
			"EnvironmentFile=-" + prefix + "/etc/camd/env",
		} {
			if !strings.Contains(u, want) {
				t.Errorf("installed unit lacks %q:\n%s", want, u)
			}
		}
		// verify exits 0 on unknown keys and bad values too, only saying
		// so: anything it prints is a failure. (It also checks that
		// ExecStart's binary exists, which is why it runs on the installed
		// unit rather than on deploy/camd.service.)
		if out, err := exec.Command("systemd-analyze", "verify", unit).CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", unit, err, out)
		}
		// The hardening as systemd scores it: 3.1 ("OK") when written; a
		// weakened unit scores higher.
		if out, err := exec.Command("systemd-analyze", "security", "--offline=true", "--threshold=35", unit).CombinedOutput(); err != nil {
			t.Errorf("systemd-analyze security: exposure above 3.5: %v\n%s", err, out)
		}

		// Installing again (an upgrade) keeps the user's config.
		edited := readFile(t, config) + "# edited\n"
		if err := os.WriteFile(config, []byte(edited), 0o644); err != nil {
			t.Fatal(err)
		}
		makeInstall(t, bin, "PREFIX="+prefix)
		if readFile(t, config) != edited {
			t.Error("make install overwrote an existing config.yaml")
		}
	})

	// Everything lands below DESTDIR, and the files name the final paths,
	// not the staging directory.
	t.Run("destdir", func(t *testing.T) {
		stage := filepath.Join(dir, "stage")
		makeInstall(t, bin, "DESTDIR="+stage, "PREFIX=/usr", "SYSCONFDIR=/etc")
		for _, f := range []string{"usr/bin/camd", "usr/lib/camd/camd-plugin-mjpeg", "etc/camd/config.yaml", "usr/lib/systemd/system/camd.service"} {
			if _, err := os.Stat(filepath.Join(stage, f)); err != nil {
				t.Errorf("not staged: %v", err)
			}
		}
		unit := readFile(t, filepath.Join(stage, "usr/lib/systemd/system/camd.service"))
		config := readFile(t, filepath.Join(stage, "etc/camd/config.yaml"))
		for file, wants := range map[string][]string{
			unit:   {"ExecStart=/usr/bin/camd run -config /etc/camd/config.yaml", "EnvironmentFile=-/etc/camd/env"},
			config: {"plugin_dir: /usr/lib/camd"},
		} {
			for _, want := range wants {
				if !strings.Contains(file, want) {
					t.Errorf("staged file lacks %q:\n%s", want, file)
				}
			}
			if strings.Contains(file, stage) || strings.Contains(file, "/usr/local") {
				t.Errorf("staged file names the staging directory or the default prefix:\n%s", file)
			}
		}
	})
}
