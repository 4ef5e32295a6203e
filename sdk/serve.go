package sdk

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// Serve runs out as a camd output plugin and returns when camd stops it.
// Call it from main. Run by hand (not by camd) it answers -version and
// -sample-config, and otherwise says how it is meant to be used.
func Serve(info Info, out Output) {
	if os.Getenv(Handshake.MagicCookieKey) != Handshake.MagicCookieValue {
		os.Exit(byHand(info, os.Args[1:], os.Stdout, os.Stderr))
	}
	// Capture the real stderr before go-plugin swaps os.Stderr: camd reads
	// it line by line and re-emits these JSON lines under the output's name.
	log := NewLogger(os.Stderr, slog.LevelDebug)
	srv := NewServer(info, out, log)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go watchParent(ctx, log)
	go onTerm(ctx, srv, log)

	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         map[string]plugin.Plugin{PluginName: &GRPCPlugin{Impl: srv}},
		// opts carry AutoMTLS credentials when enabled: keep them.
		GRPCServer: NewGRPCServer,
	})

	stopCtx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	if err := srv.Stop(stopCtx); err != nil {
		log.Error("stop", "err", err)
	}
}

// NewGRPCServer returns the gRPC server a plugin serves on: gRPC's default
// 4 MiB receive limit is raised so large frames pass.
func NewGRPCServer(opts []grpc.ServerOption) *grpc.Server {
	return grpc.NewServer(append(opts, grpc.MaxRecvMsgSize(MaxFrameBytes+1<<20))...)
}

// watchParent exits the plugin when the process that started it (camd) is
// gone, even if camd was killed with SIGKILL. camd also sets a parent-death
// signal, but that is Linux-only and tied to the forking thread.
func watchParent(ctx context.Context, log *slog.Logger) {
	ppid := os.Getppid()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if os.Getppid() != ppid {
				log.Warn("camd is gone, exiting")
				os.Exit(0)
			}
		}
	}
}

// termGrace is how long a plugin that got SIGTERM waits for camd to stop it
// properly. A SIGTERM to the whole process group (systemd, timeout(1)) reaches
// the plugins too, and camd closes their streams in order within this time.
const termGrace = 3 * time.Second

// onTerm stops the output and exits on SIGTERM, after giving camd termGrace
// to do it first.
func onTerm(ctx context.Context, srv *Server, log *slog.Logger) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM)
	select {
	case <-ctx.Done():
		return
	case <-ch:
	}
	select {
	case <-ctx.Done():
		return
	case <-time.After(termGrace):
	}
	log.Warn("SIGTERM: stopping")
	stopCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Stop(stopCtx)
	os.Exit(0)
}

// NewLogger returns a logger that writes hclog-style JSON lines, which
// go-plugin on the camd side parses and re-emits with their level and
// attributes.
func NewLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				// go-plugin insists on exactly six fractional digits.
				return slog.String("@timestamp", a.Value.Time().Format("2006-01-02T15:04:05.000000Z07:00"))
			case slog.LevelKey:
				return slog.String("@level", strings.ToLower(a.Value.String()))
			case slog.MessageKey:
				return slog.String("@message", a.Value.String())
			case "err":
				return slog.String("err", fmt.Sprint(a.Value.Any()))
			}
			return a
		},
	}))
}

// byHand is what a plugin does when a person runs it: camd did not start
// it (the handshake cookie is missing).
func byHand(info Info, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("camd-plugin-"+info.Name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	version := fs.Bool("version", false, "print the plugin's version and the contract version it speaks")
	sample := fs.Bool("sample-config", false, "print a sample config block (outputs[].config) with the defaults")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "camd-plugin-%s is a camd output plugin. camd starts it for an output with\n"+
			"plugin: %s in config.yaml; run by hand it only answers these flags:\n\n", info.Name, info.Name)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	switch {
	case *version:
		fmt.Fprintf(stdout, "camd-plugin-%s %s (plugin contract v%d)\n", info.Name, info.Version, APIVersion)
	case *sample:
		if info.SampleConfig == "" {
			fmt.Fprintf(stderr, "camd-plugin-%s has no sample config\n", info.Name)
			return 1
		}
		fmt.Fprint(stdout, info.SampleConfig)
	default:
		fs.Usage()
		return 2
	}
	return 0
}
