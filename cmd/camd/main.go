// Command camd is the camera daemon: it reads config.yaml, pulls frames from
// the configured cameras and routes them to output plugins.
//
//	camd run      [-config FILE]   run (the default when no command is given)
//	camd validate [-config FILE]   check FILE, the plugin binaries, their configs and ports
//	camd reload   [-config FILE]   make the running camd re-read FILE (as SIGHUP does)
//	camd version                   print camd's version and the plugin contract's
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
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
	{"validate", "check the config, the plugin binaries, their configs and listen addresses"},
	{"reload", "make the running camd re-read its config (as SIGHUP does)"},
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
	path := fs.String("config", "config.yaml", "the config file")
	showVersion := fs.Bool("version", false, "print the version and exit")
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
		return validate(cfg, opt, stderr)
	case "reload":
		return reload(cfg, stdout, stderr)
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
// accepts its config block, and that every listen address is free.
func validate(cfg *config.Config, opt daemon.Options, stderr io.Writer) int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if errs := daemon.Check(ctx, cfg, opt.Log, nil); len(errs) > 0 {
		for _, e := range errs {
			fmt.Fprintln(stderr, opt.Redactor.String(e.Error()))
		}
		return 1
	}
	fmt.Fprintf(stderr, "%s: ok (%d cameras, %d outputs)\n", cfg.Path, len(cfg.Cameras), len(cfg.Outputs))
	return 0
}

// reload asks the camd serving cfg's http.listen to re-read its config.
func reload(cfg *config.Config, stdout, stderr io.Writer) int {
	host, port, _ := net.SplitHostPort(cfg.HTTP.Listen)
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	url := "http://" + net.JoinHostPort(host, port) + "/api/reload"
	client := &http.Client{Timeout: 2 * time.Minute}
	resp, err := client.Post(url, "", nil)
	if err != nil {
		fmt.Fprintf(stderr, "camd reload: is camd running? %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	var st daemon.ReloadStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		fmt.Fprintf(stderr, "camd reload: %s: %s\n", url, resp.Status)
		return 1
	}
	if !st.OK {
		for _, e := range st.Errors {
			fmt.Fprintln(stderr, e)
		}
		fmt.Fprintln(stderr, "camd reload: refused; camd keeps running the previous config")
		return 1
	}
	fmt.Fprintln(stdout, "camd reload: ok")
	for _, c := range st.Changed {
		fmt.Fprintln(stdout, "  "+c)
	}
	return 0
}
