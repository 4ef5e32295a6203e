// Command camd is the camera daemon: it reads config.yaml, pulls frames from
// the configured cameras and routes them to output plugins.
//
//	camd                          run with ./config.yaml
//	camd run -config FILE         run with FILE
//	camd validate -config FILE    check FILE, the plugin binaries and their configs
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/camd/camd/internal/config"
	"github.com/camd/camd/internal/daemon"
	"github.com/camd/camd/internal/pluginhost"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 && (args[0] == "run" || args[0] == "validate") {
		cmd, args = args[0], args[1:]
	} else if len(args) > 0 && (args[0] == "help" || args[0] == "-h" || args[0] == "--help") {
		fmt.Fprintln(stderr, "usage: camd [run|validate] [-config FILE]")
		return 0
	}
	fs := flag.NewFlagSet("camd "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "config.yaml", "config file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	log := newLogger(stderr, cfg.LogLevel)

	switch cmd {
	case "validate":
		return validate(cfg, log, stderr)
	default:
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		d, err := daemon.New(cfg, log)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		if err := d.Run(ctx); err != nil {
			log.Error("camd", "err", err)
			return 1
		}
		return 0
	}
}

// validate checks what Load cannot: that every plugin binary starts and
// accepts its config block.
func validate(cfg *config.Config, log *slog.Logger, stderr io.Writer) int {
	bad := 0
	for i, o := range cfg.Outputs {
		spec, err := daemon.Spec(cfg, i)
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			err = pluginhost.Validate(ctx, spec, log)
			cancel()
		}
		var ce *pluginhost.ConfigError
		switch {
		case errors.As(err, &ce):
			for _, e := range ce.Errors {
				fmt.Fprintln(stderr, cfg.PluginError(i, e.Key, e.Message))
				bad++
			}
		case err != nil:
			fmt.Fprintln(stderr, cfg.ErrorAt(fmt.Sprintf("outputs[%d]", i), fmt.Sprintf("output %q: %v", o.Name, err)))
			bad++
		}
	}
	if bad > 0 {
		return 1
	}
	fmt.Fprintf(stderr, "%s: ok (%d cameras, %d outputs)\n", cfg.Path, len(cfg.Cameras), len(cfg.Outputs))
	return 0
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}
