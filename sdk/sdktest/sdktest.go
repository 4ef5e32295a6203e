// Package sdktest runs an sdk.Output over real gRPC on a unix socket, in-process, so a plugin
// author can test a plugin across the same boundary camd uses, without
// building a binary.
//
//	h := sdktest.New(t, &MyOutput{})
//	urls, err := h.Start("out", []string{"cam"}, "listen: 127.0.0.1:0")
//	h.Send(sdk.Frame{Camera: "cam", Seq: 1, JPEG: jpg})
package sdktest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/camd/camd/proto/outputv1"
	"github.com/camd/camd/sdk"
	"github.com/camd/camd/sdk/wire"
)

// Harness is a configured connection to an Output under test.
type Harness struct {
	t      testing.TB
	Client pb.OutputClient
	srv    *sdk.Server

	mu     sync.Mutex
	stream pb.Output_FramesClient
	acks   chan *pb.FramesResponse
}

// New serves out over gRPC on a unix socket, with the same server options
// as sdk.Serve. The output is stopped when the test ends.
func New(t testing.TB, out sdk.Output) *Harness {
	t.Helper()
	log := wire.NewLogger(os.Stderr, slog.LevelWarn)
	srv := sdk.NewServer(sdk.Info{Name: "test", Version: "0"}, out, log)

	// A short path: unix socket paths are limited to ~100 bytes and
	// t.TempDir() can be longer.
	dir, err := os.MkdirTemp("", "sdktest")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "plugin.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	gs := wire.NewGRPCServer(nil)
	pb.RegisterOutputServer(gs, srv)
	go func() { _ = gs.Serve(ln) }()
	conn, err := grpc.NewClient("unix://"+sock,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32), grpc.MaxCallSendMsgSize(math.MaxInt32)))
	if err != nil {
		t.Fatal(err)
	}
	h := &Harness{t: t, Client: pb.NewOutputClient(conn), srv: srv}
	t.Cleanup(func() {
		h.mu.Lock()
		if h.stream != nil {
			_ = h.stream.CloseSend()
		}
		h.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
		_ = conn.Close()
		gs.Stop()
		os.RemoveAll(dir)
	})
	return h
}

// Validate runs Configure with validate_only and returns the config errors.
func (h *Harness) Validate(cameras []string, configYAML string) sdk.ConfigErrors {
	h.t.Helper()
	resp, err := h.Client.Configure(context.Background(), &pb.ConfigureRequest{
		Output: "test", Cameras: cameras, ConfigYaml: []byte(configYAML), ValidateOnly: true,
	})
	if err != nil {
		h.t.Fatalf("configure: %v", err)
	}
	return errorsOf(resp)
}

// Start configures and starts the output and returns the URLs it serves.
func (h *Harness) Start(output string, cameras []string, configYAML string) ([]string, error) {
	resp, err := h.Client.Configure(context.Background(), &pb.ConfigureRequest{
		Output: output, Cameras: cameras, ConfigYaml: []byte(configYAML),
	})
	if err != nil {
		return nil, err
	}
	if errs := errorsOf(resp); len(errs) > 0 {
		return nil, errs
	}
	if resp.StartError != "" {
		return nil, errors.New(resp.StartError)
	}
	return resp.Urls, nil
}

// SetCameras changes the running output's cameras, as camd does on a
// config reload.
func (h *Harness) SetCameras(cameras []string) error {
	_, err := h.Client.SetCameras(context.Background(), &pb.SetCamerasRequest{Cameras: cameras})
	return err
}

// Send sends one frame and waits until the output acknowledged it, i.e.
// until its HandleFrame returned.
func (h *Harness) Send(f sdk.Frame) error {
	h.mu.Lock()
	if h.stream == nil {
		s, err := h.Client.Frames(context.Background())
		if err != nil {
			h.mu.Unlock()
			return err
		}
		h.stream, h.acks = s, make(chan *pb.FramesResponse, 16)
		go func() {
			defer close(h.acks)
			for {
				a, err := s.Recv()
				if err != nil {
					return
				}
				h.acks <- a
			}
		}()
	}
	s := h.stream
	h.mu.Unlock()
	if err := s.Send(&pb.FramesRequest{Frame: wire.FrameToProto(f)}); err != nil {
		return err
	}
	select {
	case a, ok := <-h.acks:
		if !ok {
			return fmt.Errorf("frame stream closed before ack")
		}
		if a.AckCamera != f.Camera || a.AckSeq != f.Seq {
			return fmt.Errorf("ack for %s/%d, want %s/%d", a.AckCamera, a.AckSeq, f.Camera, f.Seq)
		}
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("no ack for %s/%d", f.Camera, f.Seq)
	}
}

// Status returns the output's StatusReporter value, decoded from JSON.
func (h *Harness) Status() map[string]any {
	h.t.Helper()
	resp, err := h.Client.Status(context.Background(), &pb.StatusRequest{})
	if err != nil {
		h.t.Fatalf("status: %v", err)
	}
	m := map[string]any{}
	if len(resp.Json) > 0 {
		if err := json.Unmarshal(resp.Json, &m); err != nil {
			h.t.Fatalf("status: %v", err)
		}
	}
	return m
}

// Stop stops the output, as camd does when it shuts down.
func (h *Harness) Stop(ctx context.Context) error { return h.srv.Stop(ctx) }

func errorsOf(resp *pb.ConfigureResponse) sdk.ConfigErrors {
	var errs sdk.ConfigErrors
	for _, e := range resp.Errors {
		errs = append(errs, &sdk.ConfigError{Key: e.Key, Message: e.Message})
	}
	return errs
}
