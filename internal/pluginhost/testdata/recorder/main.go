// Command recorder is a test plugin: it appends a line per frame it gets
// (camera, seq, size, SHA-256, placeholder) to the file named by its
// config's `file:` key. It releases camera a's frames at once and keeps
// camera b's, checking on every frame that none it kept has changed (a
// line "kept frame changed" if one has). With a second line `hang: yes`
// it never returns from its first frame, as a hung plugin.
package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/camd/camd/sdk"
)

type recorder struct {
	mu   sync.Mutex
	f    *os.File
	kept []kept
	hang bool
}

type kept struct {
	f   sdk.Frame
	sum [32]byte
}

func (r *recorder) Configure(cfg sdk.Config) error {
	first, rest, _ := strings.Cut(strings.TrimSpace(string(cfg.Raw)), "\n")
	r.hang = strings.TrimSpace(rest) == "hang: yes"
	name, ok := strings.CutPrefix(first, "file: ")
	if !ok {
		return &sdk.ConfigError{Key: "file", Message: "required"}
	}
	f, err := os.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	r.f = f
	return nil
}

func (r *recorder) Start(context.Context) ([]string, error) { return nil, nil }

func (r *recorder) HandleFrame(f sdk.Frame) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sum := sha256.Sum256(f.JPEG)
	fmt.Fprintf(r.f, "%s %d %d %x %v\n", f.Camera, f.Seq, len(f.JPEG), sum, f.Placeholder)
	if r.hang {
		select {}
	}
	if f.Camera == "a" {
		f.Release()
	} else {
		r.kept = append(r.kept, kept{f, sum})
	}
	for _, k := range r.kept {
		if sha256.Sum256(k.f.JPEG) != k.sum {
			fmt.Fprintf(r.f, "kept frame changed: %s %d\n", k.f.Camera, k.f.Seq)
		}
	}
}

func (r *recorder) Stop(context.Context) error { return r.f.Close() }

func main() { sdk.Serve(sdk.Info{Name: "recorder", Version: "test"}, &recorder{}) }
