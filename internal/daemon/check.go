package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/camd/camd/internal/config"
	"github.com/camd/camd/internal/pluginhost"
)

// Check finds what config.Load cannot: it starts every output's plugin to
// check its config block (binary present, sha256 pin, keys), and checks
// the listen addresses of the daemon and every output for conflicts with
// each other and with sockets already bound on this machine. held lists
// addresses this camd already listens on (a reload), which are not
// conflicts. It returns every problem found, in file order.
func Check(ctx context.Context, cfg *config.Config, log *slog.Logger, held []string) config.Errors {
	errs, _ := check(ctx, cfg, log, held, nil)
	return errs
}

// InUse is asked by CheckBeside about a listen address of the config that
// a socket on this machine already holds. ok means the running camd of
// this very config holds it, so a reload keeps it; otherwise why says who
// holds it, or is "" when that is not known.
type InUse func(ctx context.Context, addr string) (ok bool, why string)

// CheckBeside is Check for `camd validate`, which runs beside camd rather
// than inside it, so it cannot know which sockets are camd's: it asks
// inUse about each address in use. Those the running camd holds come back
// as fine (file:line: key: address is in use by the running camd), not
// as errors.
func CheckBeside(ctx context.Context, cfg *config.Config, log *slog.Logger, inUse InUse) (errs config.Errors, fine []string) {
	return check(ctx, cfg, log, nil, inUse)
}

func check(ctx context.Context, cfg *config.Config, log *slog.Logger, held []string, inUse InUse) (config.Errors, []string) {
	type result struct {
		checked pluginhost.Checked
		errs    config.Errors
	}
	results := make([]result, len(cfg.Outputs))
	var wg sync.WaitGroup
	for i := range cfg.Outputs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			spec, err := Spec(cfg, i)
			if err != nil {
				results[i].errs = config.Errors{cfg.ErrorAt(fmt.Sprintf("outputs[%d]", i), err.Error())}
				return
			}
			vctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			checked, err := pluginhost.Validate(vctx, spec, quiet(log).With("output", spec.Name, "phase", "check"))
			if err != nil {
				results[i].errs = outputErrors(cfg, i, err)
				return
			}
			results[i].checked = checked
		}()
	}
	wg.Wait()

	var errs config.Errors
	// Every address that will be listened on, and whose it is.
	type claim struct {
		addr  string
		owner string // "camd's API" or `output "web"`
		err   func(msg string) *config.Error
	}
	claims := []claim{{cfg.HTTP.Listen, "camd's API (http.listen)", func(msg string) *config.Error { return cfg.ErrorAt("http.listen", msg) }}}
	for i, r := range results {
		errs = append(errs, r.errs...)
		for _, a := range r.checked.Listen {
			if !config.IsLoopback(a) && !cfg.OpenAllowed() {
				errs = append(errs, cfg.PluginError(i, "listen", config.OpenRefusal(a)))
			}
			claims = append(claims, claim{a, fmt.Sprintf("output %q", cfg.Outputs[i].Name), func(msg string) *config.Error {
				return cfg.PluginError(i, "listen", msg)
			}})
		}
	}
	var fine []*config.Error
	for j, c := range claims {
		clash := false
		for _, earlier := range claims[:j] {
			if Conflicts(c.addr, earlier.addr) {
				errs = append(errs, c.err(fmt.Sprintf("%s is already taken by %s: give each its own port", c.addr, earlier.owner)))
				clash = true
				break
			}
		}
		if clash || slices.ContainsFunc(held, func(h string) bool { return Conflicts(c.addr, h) }) {
			continue
		}
		err := tryListen(c.addr)
		if err == nil {
			continue
		}
		why := "another program uses it?"
		if inUse != nil && errors.Is(err, syscall.EADDRINUSE) {
			ok, who := inUse(ctx, c.addr)
			if ok {
				fine = append(fine, c.err(fmt.Sprintf("%s is in use by the running camd: fine, a reload keeps it", c.addr)))
				continue
			}
			if who != "" {
				why = who
			}
		}
		errs = append(errs, c.err(fmt.Sprintf("cannot listen on %s: %v (%s)", c.addr, unwrapOp(err), why)))
	}
	byLine := func(a, b *config.Error) int { return a.Line - b.Line }
	slices.SortStableFunc(errs, byLine)
	slices.SortStableFunc(fine, byLine)
	var lines []string
	for _, f := range fine {
		lines = append(lines, f.Error())
	}
	return errs, lines
}

// Conflicts reports whether two listen addresses would collide: the same
// port on the same host, or on any host when one is a wildcard. Port 0
// (pick any) never collides. camd validate matches the running camd's
// addresses with it, as a reload does.
func Conflicts(a, b string) bool {
	ha, pa, err1 := net.SplitHostPort(a)
	hb, pb, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil || pa != pb || pa == "0" {
		return false
	}
	ha, hb = canonicalHost(ha), canonicalHost(hb)
	return ha == hb || ha == "" || hb == ""
}

// canonicalHost maps the ways of writing a host to one: "" for any
// address, loopback names to their address.
func canonicalHost(h string) string {
	switch h {
	case "", "0.0.0.0", "::", "[::]":
		return ""
	case "localhost":
		return "127.0.0.1"
	}
	if ip := net.ParseIP(h); ip != nil {
		if ip.IsUnspecified() {
			return ""
		}
		return ip.String()
	}
	return strings.ToLower(h)
}

// tryListen reports whether addr can be listened on now.
func tryListen(addr string) error {
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "0" {
		return nil // a bad address is the plugin's to report; port 0 always works
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return ln.Close()
}

// unwrapOp drops net.OpError's "listen tcp ADDR:" prefix, which repeats
// what the message already says.
func unwrapOp(err error) error {
	if oe, ok := err.(*net.OpError); ok && oe.Err != nil {
		return oe.Err
	}
	return err
}

// quiet returns log without its info and debug lines: a check starts and
// stops every plugin, which is not news.
func quiet(log *slog.Logger) *slog.Logger { return slog.New(minLevel{log.Handler(), slog.LevelWarn}) }

type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}
func (h minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(as), h.min}
}
func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.Handler.WithGroup(name), h.min}
}
