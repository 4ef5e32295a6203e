package daemon

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/camd/camd/internal/config"
)

func TestConflicts(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"127.0.0.1:8081", "127.0.0.1:8081", true},
		{"127.0.0.1:8081", "127.0.0.1:8082", false},
		{"0.0.0.0:8081", "127.0.0.1:8081", true},
		{":8081", "192.168.1.5:8081", true},
		{"[::]:8081", "127.0.0.1:8081", true},
		{"localhost:8081", "127.0.0.1:8081", true},
		{"127.0.0.1:8081", "192.168.1.5:8081", false},
		{"127.0.0.1:0", "127.0.0.1:0", false},
		{"garbage", "127.0.0.1:8081", false},
	} {
		if got := Conflicts(tc.a, tc.b); got != tc.want {
			t.Errorf("Conflicts(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
		if got := Conflicts(tc.b, tc.a); got != tc.want {
			t.Errorf("Conflicts(%q, %q) = %v, want %v (not symmetric)", tc.b, tc.a, got, tc.want)
		}
	}
}

// CheckBeside asks inUse about a listen address in use, and only then:
// what the running camd holds is fine, anything else an error naming the
// address and who holds it, if inUse knows; Check (camd run, reload)
// never asks.
func TestCheckBeside(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	held := busy.Addr().String()
	freeLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	free := freeLn.Addr().String()
	freeLn.Close()

	for _, tc := range []struct {
		name   string
		listen string
		ok     bool   // inUse's answer
		why    string // inUse's answer
		asked  bool   // whether inUse is asked
		err    string // the one error, "" for none
		fine   string // the one fine address, "" for none
	}{{
		name: "held by the running camd", listen: held, ok: true, asked: true,
		fine: "c.yaml:1: http.listen: " + held + " is in use by the running camd: fine, a reload keeps it",
	}, {
		name: "held by someone inUse knows", listen: held, why: "held by the camd at x, which runs y", asked: true,
		err: "c.yaml:1: http.listen: cannot listen on " + held + ": bind: address already in use (held by the camd at x, which runs y)",
	}, {
		name: "held by someone inUse does not know", listen: held, asked: true,
		err: "c.yaml:1: http.listen: cannot listen on " + held + ": bind: address already in use (another program uses it?)",
	}, {
		name: "free", listen: free,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Parse("c.yaml", []byte("http: {listen: "+tc.listen+"}\ncameras: [{name: sim, source: {type: sim}}]\n"))
			if err != nil {
				t.Fatal(err)
			}
			log := slog.New(slog.DiscardHandler)
			asked := false
			inUse := func(_ context.Context, addr string) (bool, string) {
				asked = true
				if addr != tc.listen {
					t.Errorf("asked about %s, want %s", addr, tc.listen)
				}
				return tc.ok, tc.why
			}
			errs, fine := CheckBeside(context.Background(), cfg, log, inUse)
			if asked != tc.asked {
				t.Errorf("inUse asked: %v, want %v", asked, tc.asked)
			}
			if got := joinErrors(errs); got != tc.err {
				t.Errorf("errors %q, want %q", got, tc.err)
			}
			if got := strings.Join(fine, "\n"); got != tc.fine {
				t.Errorf("fine %q, want %q", got, tc.fine)
			}
			// Check, for camd run and reload, knows no running camd.
			wantCheck := ""
			if tc.asked {
				wantCheck = "c.yaml:1: http.listen: cannot listen on " + held + ": bind: address already in use (another program uses it?)"
			}
			if got := joinErrors(Check(context.Background(), cfg, log, nil)); got != wantCheck {
				t.Errorf("Check: %q, want %q", got, wantCheck)
			}
		})
	}
}

func joinErrors(errs config.Errors) string {
	var lines []string
	for _, e := range errs {
		lines = append(lines, e.Error())
	}
	return strings.Join(lines, "\n")
}
