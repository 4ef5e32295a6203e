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
	"syscall"
	"time"

	"github.com/hashicorp/go-plugin"

	"github.com/camd/camd/sdk/wire"
)

// Serve runs out as a camd output plugin and returns when camd stops it.
// Call it from main. Run by hand (not by camd) it answers -version and
// -sample-config, and otherwise says how it is meant to be used.
func Serve(info Info, out Output) {
	if os.Getenv(wire.Handshake.MagicCookieKey) != wire.Handshake.MagicCookieValue {
		os.Exit(byHand(info, os.Args[1:], os.Stdout, os.Stderr))
	}
	// Capture the real stderr before go-plugin swaps os.Stderr: camd reads
	// it line by line and re-emits these JSON lines under the output's name.
	log := wire.NewLogger(os.Stderr, slog.LevelDebug)
	srv := NewServer(info, out, log)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go watchParent(ctx, log)
	go onTerm(ctx, srv, log)

	// Frames through shared memory, when camd offers it; the Hello goes
	// out before the handshake below (see wire.EnvFrameFDs).
	shm, err := openShmFrames()
	if err != nil {
		log.Warn("frames over gRPC: shared memory refused", "err", err)
	}
	var shmDone chan struct{}
	if shm != nil {
		shmDone = make(chan struct{})
		go func() {
			defer close(shmDone)
			if err := shm.run(out, log); err != nil {
				log.Error("frame transport", "err", err)
			}
		}()
	}

	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: wire.Handshake,
		Plugins:         map[string]plugin.Plugin{wire.PluginName: &wire.GRPCPlugin{Impl: srv}},
		// opts carry AutoMTLS credentials when enabled: keep them.
		GRPCServer: wire.NewGRPCServer,
	})

	if shm != nil { // no HandleFrame may run during Stop
		shm.stop()
		<-shmDone
		shm.close()
	}

	stopCtx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	if err := srv.Stop(stopCtx); err != nil {
		log.Error("stop", "err", err)
	}
}

// watchParent exits the plugin when the process that started it (camd) is
// gone, even if camd was killed with SIGKILL. camd also sets a parent-death
// signal, but that is Linux-only and tied to the forking thread.
func watchParent(ctx context.Context, log *slog.Logger) {
	ppid := os.Getppid()
	t := time.NewTicker(time.Second) // a wake-up a second: idle plugins cost nothing
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
