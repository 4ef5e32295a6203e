package pluginhost

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/camd/camd/sdk/wire"
)

// buildPlugin builds testdata/<name> and returns the binary's path.
func buildPlugin(t *testing.T, name string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	if out, err := exec.Command("go", "build", "-o", bin, "./testdata/"+name).CombinedOutput(); err != nil {
		t.Fatalf("build the test plugin %s: %v\n%s", name, err, out)
	}
	return bin
}

// runOutput runs an Output until the test ends, and returns once its
// plugin has started. Run must return within 30s of its context ending:
// a reload or shutdown waits for it.
func runOutput(t *testing.T, spec Spec, setup ...func(*Output)) (*Output, context.Context) {
	t.Helper()
	o := New(spec, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for _, f := range setup {
		f(o)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); o.Run(ctx, "") }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Errorf("the output's Run did not return in 30s after its context ended (a reload or shutdown would hang)")
		}
	})
	select {
	case err := <-o.Launched():
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the plugin did not start in 60s")
	}
	return o, ctx
}

// TestHungPluginIsRestarted: a plugin that stops acknowledging frames
// holds up nobody. The camera offering frames carries on (they wait in the
// mailbox, newest wins), and the output restarts the plugin once a frame
// has gone unacknowledged for AckTimeout, even when the process answers
// nothing at all (not even go-plugin's shutdown call).
func TestHungPluginIsRestarted(t *testing.T) {
	cases := []struct {
		name   string
		config string
		freeze bool // SIGSTOP the process
	}{
		{"stuck in HandleFrame", "\nhang: yes", false},
		{"process frozen", "", true},
	}
	bin := buildPlugin(t, "recorder")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o, ctx := runOutput(t, Spec{Name: "rec", Plugin: "recorder", Path: bin, Cameras: []string{"a"},
				ConfigYAML: []byte("file: " + filepath.Join(t.TempDir(), "frames.txt") + tc.config),
				AckTimeout: time.Second, MinBackoff: 50 * time.Millisecond})
			pid := o.Status(ctx).PID
			if tc.freeze {
				if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
					t.Fatal(err)
				}
				defer syscall.Kill(pid, syscall.SIGKILL)
			}

			// A camera's loop: an Offer that does not return in 10s has
			// stalled the camera.
			offered := make(chan struct{})
			go func() {
				for seq := uint64(1); ctx.Err() == nil; seq++ {
					o.Offer(wire.Frame{Camera: "a", Seq: seq, Captured: time.Now(), JPEG: bytes.Repeat([]byte{byte(seq)}, 1000)})
					select {
					case offered <- struct{}{}:
					case <-ctx.Done():
						return
					}
					time.Sleep(10 * time.Millisecond)
				}
			}()
			deadline := time.Now().Add(60 * time.Second)
			for o.Counters().Restarts == 0 {
				select {
				case <-offered:
				case <-time.After(10 * time.Second):
					t.Fatal("an Offer waited more than 10s: the hung plugin stalls the camera")
				}
				if time.Now().After(deadline) {
					t.Fatalf("the hung plugin was not restarted in 60s (state %q)", o.Counters().State)
				}
			}
			// The restart is counted just before its reason is recorded,
			// and the new process follows after the backoff.
			for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
				st := o.Status(sctx)
				scancel()
				if strings.Contains(st.LastError, "plugin hung") && st.State == "running" && st.PID != 0 && st.PID != pid {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("30s after the restart: state %q, pid %d (hung one %d), last error %q; want a new process running and the error to say the plugin hung",
						st.State, st.PID, pid, st.LastError)
				}
			}
		})
	}
}

// TestStopWhileFramesFlowOverGRPC: an output stops (reload, shutdown)
// while its camera offers frames as fast as it can, over the gRPC stream;
// run with -race, it checks that closing the stream does not race a send.
func TestStopWhileFramesFlowOverGRPC(t *testing.T) {
	bin := buildPlugin(t, "grpconly")
	jpeg := bytes.Repeat([]byte{1}, 200<<10)
	for round := range 3 {
		o := New(Spec{Name: "g", Plugin: "grpconly", Path: bin, Cameras: []string{"a", "b"}},
			slog.New(slog.NewTextHandler(io.Discard, nil)))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); o.Run(ctx, "") }()
		if err := <-o.Launched(); err != nil {
			t.Fatal(err)
		}
		fed := make(chan struct{})
		go func() {
			defer close(fed)
			for seq := uint64(1); ctx.Err() == nil; seq++ {
				o.Offer(wire.Frame{Camera: "a", Seq: seq, JPEG: jpeg})
				o.Offer(wire.Frame{Camera: "b", Seq: seq, JPEG: jpeg})
			}
		}()
		time.Sleep(300 * time.Millisecond)
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: Run did not return in 30s after its context ended", round+1)
		}
		<-fed
	}
}

// TestDemandFollowsTheProcess: an output wants its cameras only while a
// plugin process has taken its config, so an output starting, crashing
// or restarting keeps no on_demand camera connected. Each process that
// takes its config tells OnDemand it gained the cameras (so an offline
// one sends it a placeholder at once); one that ends gains nothing.
func TestDemandFollowsTheProcess(t *testing.T) {
	spec := Spec{Name: "rec", Plugin: "recorder", Path: buildPlugin(t, "recorder"), Cameras: []string{"a"},
		ConfigYAML: []byte("file: " + filepath.Join(t.TempDir(), "frames.txt")), MinBackoff: 3 * time.Second}
	if New(spec, slog.New(slog.DiscardHandler)).Wants("a") {
		t.Fatal("an output not yet started wants its camera")
	}
	var mu sync.Mutex
	var gained [][]string
	o, ctx := runOutput(t, spec, func(o *Output) {
		o.OnDemand = func(g []string) {
			mu.Lock()
			defer mu.Unlock()
			gained = append(gained, g)
		}
	})
	gainedNow := func() [][]string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(gained)
	}
	if !o.Wants("a") {
		t.Fatal("the running plugin (it never says what it wants) does not want its camera")
	}
	if g := gainedNow(); !reflect.DeepEqual(g, [][]string{{"a"}}) {
		t.Errorf("OnDemand calls after the start: %q, want [[a]]", g)
	}
	pid := o.Status(ctx).PID
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the output to notice its plugin died", func() bool { return o.Counters().Restarts > 0 })
	if o.Wants("a") {
		t.Errorf("state %q: the dead plugin's output still wants its camera", o.Counters().State)
	}
	eventually(t, 30*time.Second, "the plugin to run again", func() bool { return o.Wants("a") && o.Counters().State == StateRunning })
	if g := gainedNow(); !reflect.DeepEqual(g, [][]string{{"a"}, nil, {"a"}}) {
		t.Errorf("OnDemand calls after a start, a crash and a restart: %q, want [[a] [] [a]]", g)
	}
}

// eventually waits up to d for cond, failing the test with what it waited for.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", d, what)
		}
	}
}
