package daemon

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// Which events concern the config file, as a user lays it out: a plain
// file, a symlink to a file elsewhere (edited there), and a Kubernetes
// ConfigMap (config.yaml -> ..data/config.yaml, ..data -> ..v1, swapped
// to ..v2 by renaming a new ..data link over it).
func TestConfigWatch(t *testing.T) {
	mustWrite := func(path string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("cameras: []\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mustLink := func(target, link string) {
		t.Helper()
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("plain file", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "config.yaml")
		mustWrite(path)
		cw := newConfigWatch(path)
		if !slices.Equal(cw.dirs(), []string{dir}) || cw.changed(filepath.Join(dir, "other.yaml")) || !cw.changed(path) {
			t.Fatalf("dirs %v; an unrelated file or the config itself misjudged", cw.dirs())
		}
	})

	t.Run("symlink to a file elsewhere", func(t *testing.T) {
		root := t.TempDir()
		real := filepath.Join(root, "real", "config.yaml")
		mustWrite(real)
		os.MkdirAll(filepath.Join(root, "s"), 0o755)
		link := filepath.Join(root, "s", "config.yaml")
		mustLink(real, link)
		cw := newConfigWatch(link)
		if !slices.Contains(cw.dirs(), filepath.Join(root, "real")) {
			t.Fatalf("the target's folder is not watched: %v", cw.dirs())
		}
		if !cw.changed(real) || cw.changed(filepath.Join(root, "real", "notes.txt")) {
			t.Fatal("an edit of the target (sed -i renames over it) or of another file misjudged")
		}
	})

	t.Run("ConfigMap swap", func(t *testing.T) {
		dir := t.TempDir()
		mustWrite(filepath.Join(dir, "..v1", "config.yaml"))
		mustLink("..v1", filepath.Join(dir, "..data"))
		mustLink(filepath.Join("..data", "config.yaml"), filepath.Join(dir, "config.yaml"))
		cw := newConfigWatch(filepath.Join(dir, "config.yaml"))
		if cw.changed(filepath.Join(dir, "..v1")) {
			t.Fatal("an event that changed nothing counted")
		}
		mustWrite(filepath.Join(dir, "..v2", "config.yaml"))
		mustLink("..v2", filepath.Join(dir, "..data_tmp"))
		if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
		if !cw.changed(filepath.Join(dir, "..data")) {
			t.Fatal("the ..data swap did not count as a change")
		}
		if cw.changed(filepath.Join(dir, "..v1")) {
			t.Fatal("the old version's removal counted again")
		}
	})
}
