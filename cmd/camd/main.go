// Command camd is the camera daemon: it reads config.yaml, pulls frames from
// the configured cameras and routes them to output plugins.
//
//	camd run      [-config FILE]   run (the default when no command is given)
//	camd validate [-config FILE]   check FILE, the plugin binaries, their configs and ports
//	                               (ports the running camd holds are fine)
//	camd reload   [-config FILE]   make the camd listening at FILE's http.listen re-read
//	                               the config file it was started with (as SIGHUP does)
//	camd version                   print camd's version and the plugin contract's
//
// validate and reload talk to the running camd's API as FILE describes it
// (see client.go): its address (http.listen), HTTPS with FILE's
// certificate (tls), and an admin token from -token-file, $CAMD_TOKEN or
// FILE's auth block. camd's /api/status says which file it runs and where
// it listens.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/camd/camd/internal/config"
	"github.com/camd/camd/internal/daemon"
	"github.com/camd/camd/internal/redact"
	"github.com/camd/camd/sdk/wire"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// commands are camd's subcommands, with their one-line help.
var commands = []struct{ name, help string }{
	{"run", "run the daemon (the default)"},
	{"validate", "check the config, the plugin binaries, their configs and listen addresses\n            (addresses the running camd holds are fine: a reload keeps them)"},
	{"reload", "make the camd at the config's http.listen re-read its config file\n            (the file it was started with, as SIGHUP does; -config only finds camd)"},
	{"version", "print camd's version and the plugin contract version"},
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: camd [command] [-config FILE]")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.help)
	}
	fmt.Fprintln(w, "\nRun 'camd <command> -h' for a command's flags.")
}

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "run", "validate", "reload", "version":
	case "help":
		usage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "camd: unknown command %q\n\n", cmd)
		usage(stderr)
		return 2
	}
	fs := flag.NewFlagSet("camd "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	configHelp := "the config file"
	if cmd == "reload" {
		configHelp = "the running camd's config file: camd reload reaches camd as it says (http.listen, tls,\n" +
			"an admin token), and reloads nothing when camd runs another file (camd re-reads only\n" +
			"the file it was started with)"
	}
	path := fs.String("config", "config.yaml", configHelp)
	showVersion := fs.Bool("version", false, "print the version and exit")
	tokenFile := new(string)
	if cmd == "reload" || cmd == "validate" {
		tokenFile = fs.String("token-file", "", "a file holding an admin token for the running camd's API\n"+
			"(default: $CAMD_TOKEN, else an admin token in the config's auth block)")
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: camd %s [flags]\n\nflags:\n", cmd)
		fs.PrintDefaults()
		if cmd == "run" {
			fmt.Fprintln(stderr)
			usage(stderr)
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *showVersion || cmd == "version" {
		return printVersion(*path, cmd == "version", stdout, stderr)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "camd %s: unexpected argument %q\n", cmd, fs.Arg(0))
		return 2
	}
	cfg, err := config.Load(*path)
	if err != nil {
		// No secrets are known yet, but the patterns (URL passwords,
		// token=) still apply: the error may quote a bad URL.
		fmt.Fprintln(stderr, redact.New().String(err.Error()))
		return 1
	}
	red := redact.New(cfg.Secrets()...)
	level := new(slog.LevelVar)
	log := slog.New(redact.Handler(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}), red))
	opt := daemon.Options{Log: log, Level: level, Redactor: red}

	switch cmd {
	case "validate":
		return validate(cfg, opt, *tokenFile, stderr)
	case "reload":
		return reload(cfg, *tokenFile, stdout, stderr)
	}
	return serve(cfg, opt, stderr)
}

// printVersion prints camd's version and, when the config file can be
// read (plugins: also for `camd version`), each configured plugin's.
func printVersion(path string, plugins bool, stdout, stderr io.Writer) int {
	fmt.Fprintf(stdout, "camd %s (plugin contract v%d)\n", version, wire.APIVersion)
	if !plugins {
		return 0
	}
	cfg, err := config.Load(path)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(stderr, "camd version: plugins: %s\n", redact.New().String(err.Error()))
		}
		return 0
	}
	for _, o := range cfg.Outputs {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		out, err := exec.CommandContext(ctx, cfg.PluginPath(o), "-version").Output()
		cancel()
		v := strings.TrimSpace(string(out))
		if err != nil || v == "" {
			v = fmt.Sprintf("%s: no version (%v)", cfg.PluginPath(o), err)
		}
		fmt.Fprintf(stdout, "output %s: %s\n", o.Name, v)
	}
	return 0
}

// serve runs the daemon until SIGINT or SIGTERM; SIGHUP reloads the config.
func serve(cfg *config.Config, opt daemon.Options, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d := daemon.New(cfg, opt)

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case <-done:
				return
			case <-hup:
				opt.Log.Info("SIGHUP: reloading the config")
				d.Reload(ctx)
			}
		}
	}()

	if err := d.Run(ctx); err != nil {
		var errs config.Errors
		if errors.As(err, &errs) {
			for _, e := range errs {
				fmt.Fprintln(stderr, opt.Redactor.String(e.Error()))
			}
			fmt.Fprintf(stderr, "camd: not starting: %d problem(s) in %s\n", len(errs), cfg.Path)
		} else {
			opt.Log.Error("camd", "err", err)
		}
		return 1
	}
	return 0
}

// validate checks what Load cannot: that every plugin binary starts and
// accepts its config block, and that every listen address is free, or
// held by the running camd of this very file, which a reload keeps.
func validate(cfg *config.Config, opt daemon.Options, tokenFile string, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := newClient(cfg, tokenFile)
	if err != nil {
		fmt.Fprintf(stderr, "camd validate: %v\n", err)
		return 1
	}
	running := &runningCamd{cfg: cfg, client: c}
	errs, fine := daemon.CheckBeside(ctx, cfg, opt.Log, running.inUse)
	for _, f := range fine {
		fmt.Fprintln(stderr, opt.Redactor.String(f))
	}
	if len(errs) > 0 {
		for _, e := range errs {
			fmt.Fprintln(stderr, opt.Redactor.String(e.Error()))
		}
		return 1
	}
	fmt.Fprintf(stderr, "%s: ok (%d cameras, %d outputs)\n", cfg.Path, len(cfg.Cameras), len(cfg.Outputs))
	return 0
}

// runningCamd tells validate (as a daemon.InUse) whether an address in
// use is held by the camd answering at cfg's http.listen, and whether
// that camd runs cfg's file: only then does a reload keep the address.
// It asks camd once, when the first address turns out to be in use, so a
// validate with every port free talks to nobody.
type runningCamd struct {
	cfg    *config.Config
	client *client
	asked  bool
	st     *camdStatus // camd's answer, or nil and err
	err    error
}

// inUse is the daemon.InUse: ok for an address this camd holds while
// running cfg's file, else why it is not (or "": not camd's at all).
func (r *runningCamd) inUse(ctx context.Context, addr string) (ok bool, why string) {
	if !r.asked {
		r.asked = true
		r.st, r.err = r.ask(ctx)
	}
	base, isAPI := r.client.base, daemon.Conflicts(addr, r.cfg.HTTP.Listen)
	var nc notCamd
	switch {
	case errors.As(r.err, &nc):
		return false, "" // no camd there: another program uses it?
	case r.err != nil && isAPI:
		return false, fmt.Sprintf("held by the camd at %s, which could not be asked which file it runs: %v", base, r.err)
	case r.err != nil:
		return false, fmt.Sprintf("perhaps held by the camd at %s, which could not be asked where it listens: %v", base, r.err)
	case !holds(r.st, r.cfg.HTTP.Listen, addr):
		return false, ""
	}
	same, err := runs(r.st, r.cfg.Path)
	switch {
	case err != nil:
		return false, fmt.Sprintf("held by the camd at %s (pid %d), which runs %s; cannot tell whether that is %s: %v", base, r.st.PID, r.st.Config, r.cfg.Path, err)
	case !same:
		return false, fmt.Sprintf("held by the camd at %s (pid %d), which runs %s, not %s: a reload re-reads that file", base, r.st.PID, r.st.Config, r.cfg.Path)
	}
	return true, ""
}

// ask finds the camd at cfg's http.listen and asks for its status. With
// auth on and no admin token at hand it does not ask: camd would refuse.
func (r *runningCamd) ask(ctx context.Context) (*camdStatus, error) {
	if err := r.client.healthz(ctx); err != nil {
		return nil, err
	}
	if r.client.token == "" && r.cfg.AuthEnabled() {
		return nil, fmt.Errorf("%s configures auth and holds no admin token (a user's password is kept only as a hash): "+
			"set CAMD_TOKEN to an admin token, or pass -token-file FILE", r.cfg.Path)
	}
	return r.client.status(ctx)
}

// reload asks the camd at cfg's http.listen to re-read its config file.
// That is the file camd was started with, whatever cfg is, so it first
// asks camd which file it runs, and reloads nothing when that is not
// cfg's: the edit the user wants applied would silently not be.
func reload(cfg *config.Config, tokenFile string, stdout, stderr io.Writer) int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "camd reload: "+format+"\n", args...)
		return 1
	}
	if _, port, _ := net.SplitHostPort(cfg.HTTP.Listen); port == "0" {
		return fail("%s: http.listen %s takes any free port, so camd reload cannot find camd: "+
			"send it SIGHUP instead (systemctl reload camd, or kill -HUP <camd's pid>)", cfg.Path, cfg.HTTP.Listen)
	}
	c, err := newClient(cfg, tokenFile)
	if err != nil {
		return fail("%v", err)
	}
	if c.token == "" && cfg.AuthEnabled() {
		return fail("%s configures auth, so camd's API wants an admin credential, and there is none at hand: "+
			"the config holds no admin token (a user's password is kept only as a hash). Either\n"+
			"  - set CAMD_TOKEN to an admin token (or pass -token-file FILE), or\n"+
			"  - reload with a signal instead: systemctl reload camd, or kill -HUP <camd's pid>", cfg.Path)
	}

	// A reload starts every plugin to check its config: give it time.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := c.healthz(ctx); err != nil {
		return fail("%v", err)
	}
	st, err := c.status(ctx)
	if err != nil {
		return fail("%v", err)
	}
	switch same, err := runs(st, cfg.Path); {
	case err != nil:
		// camd's file is not visible here (camd in a container, say):
		// reload it anyway, as before this check, and say so.
		fmt.Fprintf(stderr, "camd reload: cannot check that the camd at %s (pid %d) runs %s (%v); reloading it anyway\n",
			c.base, st.PID, cfg.Path, err)
	case !same:
		return fail("the camd at %s (pid %d) runs %s, not %s.\n"+
			"camd re-reads only the file it was started with (-config only tells camd reload how to reach it): "+
			"edit %s and reload again, or restart camd with -config %s. Nothing was reloaded.",
			c.base, st.PID, st.Config, cfg.Path, st.Config, cfg.Path)
	}

	rs, err := c.reload(ctx)
	if err != nil {
		return fail("%v", err)
	}
	if !rs.OK {
		for _, e := range rs.Errors {
			fmt.Fprintln(stderr, e)
		}
		return fail("refused; camd keeps running the previous config")
	}
	fmt.Fprintln(stdout, "camd reload: ok")
	for _, ch := range rs.Changed {
		fmt.Fprintln(stdout, "  "+ch)
	}
	return 0
}
