package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/camd/camd/proto/outputv1"
	"github.com/camd/camd/sdk/wire"
)

// Server adapts an Output to the gRPC service. It is exported for the test
// harness and for tools that want to host an Output in-process.
type Server struct {
	pb.UnimplementedOutputServer
	info Info
	out  Output
	log  *slog.Logger

	mu      sync.Mutex
	started bool
	cancel  context.CancelFunc // ends the context given to Start
	metrics *prometheus.Registry
	demand  *Demand // with Info.OnDemand, from the Configure that started it
}

// NewServer wraps out.
func NewServer(info Info, out Output, log *slog.Logger) *Server {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &Server{info: info, out: out, log: log, metrics: reg}
}

// Metrics implements pb.OutputServer.
func (s *Server) Metrics(context.Context, *pb.MetricsRequest) (*pb.MetricsResponse, error) {
	s.mu.Lock()
	reg := s.metrics
	s.mu.Unlock()
	mfs, err := reg.Gather()
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
	}
	return &pb.MetricsResponse{Text: buf.Bytes()}, nil
}

// Info implements pb.OutputServer.
func (s *Server) Info(context.Context, *pb.InfoRequest) (*pb.InfoResponse, error) {
	return &pb.InfoResponse{Name: s.info.Name, Version: s.info.Version, ApiVersion: APIVersion}, nil
}

// Configure implements pb.OutputServer.
func (s *Server) Configure(ctx context.Context, req *pb.ConfigureRequest) (*pb.ConfigureResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return nil, errors.New("output is already configured and running")
	}
	sec := SecurityFromProto(req.Security)
	// A fresh registry per Configure: Configure may run more than once
	// (validate, then start), and a plugin registers its metrics in it.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.metrics = reg
	cfg := Config{Output: req.Output, Cameras: req.Cameras, Raw: req.ConfigYaml, Log: s.log, Security: sec, Metrics: reg}
	if s.info.OnDemand {
		cfg.Demand = NewDemand()
	}
	if errs := AsConfigErrors(s.out.Configure(cfg)); len(errs) > 0 {
		resp := &pb.ConfigureResponse{}
		for _, e := range errs {
			resp.Errors = append(resp.Errors, &pb.ConfigError{Key: e.Key, Message: e.Message})
		}
		return resp, nil
	}
	var listen []string
	if l, ok := s.out.(Listener); ok {
		listen = l.ListenAddrs()
	}
	if req.ValidateOnly {
		return &pb.ConfigureResponse{Listen: listen}, nil
	}
	runCtx, cancel := context.WithCancel(WithSecurity(context.Background(), sec))
	if cfg.Demand != nil {
		runCtx = WithDemand(runCtx, cfg.Demand)
	}
	urls, err := s.out.Start(runCtx)
	if err != nil {
		cancel()
		// A failure tied to a key (a listen address in use) points at the
		// user's line; anything else travels as plain words, not as a gRPC
		// status, so camd shows the real cause.
		resp := &pb.ConfigureResponse{Listen: listen}
		var ce *ConfigError
		var ces ConfigErrors
		if errors.As(err, &ce) || errors.As(err, &ces) {
			for _, e := range AsConfigErrors(err) {
				resp.Errors = append(resp.Errors, &pb.ConfigError{Key: e.Key, Message: e.Message})
			}
		} else {
			resp.StartError = err.Error()
		}
		return resp, nil
	}
	s.started, s.cancel, s.demand = true, cancel, cfg.Demand
	return &pb.ConfigureResponse{Urls: urls, Listen: listen, OnDemand: cfg.Demand != nil}, nil
}

// SetCameras implements pb.OutputServer.
func (s *Server) SetCameras(_ context.Context, req *pb.SetCamerasRequest) (*pb.SetCamerasResponse, error) {
	cs, ok := s.out.(CameraSetter)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "this output cannot change cameras while running")
	}
	if err := cs.SetCameras(req.Cameras); err != nil {
		return nil, err
	}
	resp := &pb.SetCamerasResponse{}
	if u, ok := s.out.(URLReporter); ok {
		resp.Urls = u.URLs()
	}
	return resp, nil
}

// Frames implements pb.OutputServer. Each camera gets a worker goroutine so
// a slow camera's frames never hold up another's; the daemon sends one
// frame per camera at a time and waits for its ack.
func (s *Server) Frames(stream pb.Output_FramesServer) error {
	var (
		sendMu  sync.Mutex
		wg      sync.WaitGroup
		workers = map[string]chan *pb.Frame{}
	)
	ended := make(chan struct{}) // the stream's end, for the demand sender
	defer func() {
		close(ended)
		for _, ch := range workers {
			close(ch)
		}
		wg.Wait()
	}()
	s.mu.Lock()
	demand := s.demand
	s.mu.Unlock()
	if demand != nil {
		// What the output wants now, and again whenever that changes.
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				sendMu.Lock()
				err := stream.Send(&pb.FramesResponse{Demand: &pb.Demand{Cameras: demand.Cameras()}})
				sendMu.Unlock()
				if err != nil {
					return
				}
				select {
				case <-ended:
					return
				case <-stream.Context().Done():
					return
				case <-demand.Changed():
				}
			}
		}()
	}
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		f := req.GetFrame()
		if f == nil {
			continue
		}
		ch, ok := workers[f.Camera]
		if !ok {
			ch = make(chan *pb.Frame, 1)
			workers[f.Camera] = ch
			wg.Add(1)
			go func() {
				defer wg.Done()
				for f := range ch {
					s.out.HandleFrame(wire.FrameFromProto(f))
					sendMu.Lock()
					err := stream.Send(&pb.FramesResponse{AckCamera: f.Camera, AckSeq: f.Seq})
					sendMu.Unlock()
					if err != nil {
						s.log.Debug("ack failed", "camera", f.Camera, "err", err)
					}
				}
			}()
		}
		select {
		case ch <- f:
		case <-stream.Context().Done():
			return stream.Context().Err()
		}
	}
}

// Status implements pb.OutputServer.
func (s *Server) Status(context.Context, *pb.StatusRequest) (*pb.StatusResponse, error) {
	r, ok := s.out.(StatusReporter)
	if !ok {
		return &pb.StatusResponse{}, nil
	}
	b, err := json.Marshal(r.Status())
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	return &pb.StatusResponse{Json: b}, nil
}

// Stop stops the Output if it was started. It is safe to call more than once.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		return nil
	}
	s.started = false
	s.cancel()
	if s.demand != nil {
		s.demand.close()
	}
	return s.out.Stop(ctx)
}

type securityKey struct{}

// WithSecurity returns ctx carrying sec, as the context given to Start
// does; HTTP.Listen reads it from there.
func WithSecurity(ctx context.Context, sec Security) context.Context {
	return context.WithValue(ctx, securityKey{}, sec)
}

// SecurityFrom returns the Security in ctx (the zero value, which lets
// everyone in, when there is none).
func SecurityFrom(ctx context.Context) Security {
	sec, _ := securityIn(ctx)
	return sec
}

// securityIn returns the Security in ctx, and whether there is one.
func securityIn(ctx context.Context) (Security, bool) {
	sec, ok := ctx.Value(securityKey{}).(Security)
	return sec, ok
}

// SecurityFromProto converts the wire form.
func SecurityFromProto(p *pb.Security) Security {
	if p == nil {
		return Security{}
	}
	sec := Security{AuthRequired: p.AuthRequired, TLSCert: p.TlsCert, TLSKey: p.TlsKey, AllowOrigins: p.AllowOrigins}
	for _, u := range p.Users {
		sec.Users = append(sec.Users, User{Name: u.Name, PasswordBcrypt: u.PasswordBcrypt})
	}
	for _, t := range p.Tokens {
		tok := Token{Name: t.Name, Scope: t.Scope, Cameras: t.Cameras}
		copy(tok.SHA256[:], t.Sha256)
		sec.Tokens = append(sec.Tokens, tok)
	}
	return sec
}

// SecurityToProto converts sec for the wire.
func SecurityToProto(sec Security) *pb.Security {
	p := &pb.Security{AuthRequired: sec.AuthRequired, TlsCert: sec.TLSCert, TlsKey: sec.TLSKey, AllowOrigins: sec.AllowOrigins}
	for _, u := range sec.Users {
		p.Users = append(p.Users, &pb.User{Name: u.Name, PasswordBcrypt: u.PasswordBcrypt})
	}
	for _, t := range sec.Tokens {
		p.Tokens = append(p.Tokens, &pb.Token{Name: t.Name, Sha256: t.SHA256[:], Scope: t.Scope, Cameras: t.Cameras})
	}
	return p
}
