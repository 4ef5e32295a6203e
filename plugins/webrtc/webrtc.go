package main

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/webrtc/v4"
	"gopkg.in/yaml.v3"

	"github.com/camd/camd/sdk"
)

//go:embed sample.yaml
var sampleConfig string

// Config is the output's config block.
type Config struct {
	sdk.HTTPConfig `yaml:",inline"` // listen, max_viewers_per_client
	// Codec is h264 (OpenH264, Constrained Baseline) or vp8 (libvpx).
	Codec string `yaml:"codec"`
	// BitrateKbps is the encoder's target bitrate.
	BitrateKbps int `yaml:"bitrate_kbps"`
	// KeyframeInterval forces a keyframe at least this often (by capture
	// time); a new viewer gets one at once anyway.
	KeyframeInterval sdk.Duration `yaml:"keyframe_interval"`
	// MaxFPS caps the encoded frame rate; 0 is the camera's rate.
	MaxFPS float64 `yaml:"max_fps"`
	// MaxViewers caps WebRTC viewers over all cameras.
	MaxViewers int `yaml:"max_viewers"`
	// ICE is how viewers reach this host: STUN/TURN, ports, interfaces.
	ICE ICEConfig `yaml:"ice"`
	// WHIP maps a camera to the SFU it is published to. A yaml.Node so each
	// entry is decoded strictly, with its camera's name in error keys.
	WHIP yaml.Node `yaml:"whip"`

	whip map[string]WHIPTarget
}

// ICEConfig is how viewers reach this host.
type ICEConfig struct {
	// Servers are STUN and TURN servers, also offered to WHEP clients.
	Servers []ICEServer `yaml:"servers"`
	// UDPPorts is "8189" (one port for every viewer) or "50000-50100"; ""
	// is any port.
	UDPPorts string `yaml:"udp_ports"`
	// NAT1To1IPs are public addresses advertised beside the local ones.
	NAT1To1IPs []string `yaml:"nat_1to1_ips"`
	// Interfaces, when set, are where viewers' candidates are gathered
	// (and loopback); by default it is listen's address.
	Interfaces []string `yaml:"interfaces"`
	// MDNS resolves the ".local" names browsers put in their candidates
	// instead of their addresses, with a socket on UDP port 5353 of every
	// interface. Off, such viewers still connect: their checks arrive
	// from their real address.
	MDNS bool `yaml:"mdns"`
	// DisconnectedTimeout and FailedTimeout drop a viewer that stopped
	// answering.
	DisconnectedTimeout sdk.Duration `yaml:"disconnected_timeout"`
	FailedTimeout       sdk.Duration `yaml:"failed_timeout"`
}

// ICEServer is a STUN or TURN server.
type ICEServer struct {
	URLs       []string `yaml:"urls"`
	Username   string   `yaml:"username"`
	Credential string   `yaml:"credential"`
}

// WHIPTarget is where a camera is published.
type WHIPTarget struct {
	URL   string `yaml:"url"`
	Token string `yaml:"token"` // sent as "Authorization: Bearer <token>"
}

// WebRTC serves each camera over WebRTC. Frames go into a per-camera
// pipeline that decodes and encodes them once, on one shared track, only
// while someone watches; viewers attach to that track through WHEP.
type WebRTC struct {
	cfg Config
	log *slog.Logger

	api     *webrtc.API     // viewers'; each WHIP session builds its own
	udpMux  ice.UDPMux      // viewers' one port, unless ice.udp_ports is a range
	batch   *sendBatch      // sends a frame to every viewer on udpMux at once
	logs    *pionLogs       // pion's loggers, shared by every peer connection
	http    *sdk.HTTP       // WHEP and the pages; caps viewers in all and per client
	ctx     context.Context // from Start to Stop; the WHIP publishers' parent
	cancel  context.CancelFunc
	closing sync.WaitGroup // peer connections being closed

	certs certificates // the viewers' DTLS certificate

	// camMu serialises the changes of the camera set (SetCameras, Stop)
	// with each other; mu guards the maps they change and HTTP reads.
	camMu   sync.Mutex
	stopped bool // Stop ran: the camera set is final
	mu      sync.Mutex
	pipes   map[string]*pipeline  // by camera
	viewers map[string]*session   // by session id
	whip    map[string]*publisher // by camera, while started
	demand  *sdk.Demand           // viewers hold theirs through http; publishers here
}

// Configure implements sdk.Output.
func (p *WebRTC) Configure(c sdk.Config) error {
	p.demand = c.Demand
	// The embedded sample is the defaults (a test checks it decodes).
	p.cfg = Config{}
	if err := sdk.DecodeConfig([]byte(sampleConfig), &p.cfg); err != nil {
		return err
	}
	errs := sdk.AsConfigErrors(sdk.DecodeConfig(c.Raw, &p.cfg))
	cfg := &p.cfg
	errs = append(errs, cfg.HTTPConfig.Check()...)
	if _, ok := codecs[cfg.Codec]; !ok {
		errs = append(errs, sdk.Errorf("codec", "unknown codec %q (known: %s)", cfg.Codec, strings.Join(codecNames(), ", ")))
	}
	if cfg.BitrateKbps < 50 || cfg.BitrateKbps > 50000 {
		errs = append(errs, sdk.Errorf("bitrate_kbps", "must be between 50 and 50000"))
	}
	if cfg.KeyframeInterval < sdk.Duration(100*time.Millisecond) {
		errs = append(errs, sdk.Errorf("keyframe_interval", "must be at least 100ms, e.g. 2s"))
	}
	if cfg.MaxFPS < 0 || cfg.MaxFPS > 120 {
		errs = append(errs, sdk.Errorf("max_fps", "must be between 0 (the camera's rate) and 120"))
	}
	if cfg.MaxViewers < 1 {
		errs = append(errs, sdk.Errorf("max_viewers", "must be at least 1"))
	}
	errs = append(errs, cfg.ICE.validate()...)
	p.log = c.Log
	p.batch = &sendBatch{}
	p.logs = newPionLogs(p.log)
	// Pipelines hold no resources until someone watches, so they are made
	// here; SetCameras changes the set later.
	p.pipes = map[string]*pipeline{}
	if _, ok := codecs[cfg.Codec]; ok { // else reported above
		for _, cam := range c.Cameras {
			pl, err := newPipeline(cam, *cfg, p.log.With("camera", cam), p.batch)
			if err != nil {
				errs = append(errs, sdk.Errorf("codec", "camera %q: %v", cam, err))
				continue
			}
			p.pipes[cam] = pl
		}
	}
	cfg.whip = map[string]WHIPTarget{}
	if !cfg.WHIP.IsZero() && cfg.WHIP.Tag != "!!null" {
		if cfg.WHIP.Kind != yaml.MappingNode {
			errs = append(errs, sdk.Errorf("whip", "must map camera names to {url, token}"))
		} else {
			for i := 0; i+1 < len(cfg.WHIP.Content); i += 2 {
				cam, val := cfg.WHIP.Content[i].Value, cfg.WHIP.Content[i+1]
				key := "whip." + cam
				var t WHIPTarget
				for _, e := range sdk.DecodeNode(val, &t, nil) {
					e.Key = key + "." + e.Key
					errs = append(errs, e)
				}
				if !slices.Contains(c.Cameras, cam) {
					errs = append(errs, sdk.Errorf(key, "not one of this output's cameras (%s)", strings.Join(slices.Sorted(slices.Values(c.Cameras)), ", ")))
				}
				if !strings.HasPrefix(t.URL, "http://") && !strings.HasPrefix(t.URL, "https://") {
					errs = append(errs, sdk.Errorf(key+".url", "want an http:// or https:// WHIP endpoint"))
				}
				cfg.whip[cam] = t
			}
		}
	}
	p.registerMetrics(c.Metrics)
	return errs.Err()
}

func (c *ICEConfig) validate() sdk.ConfigErrors {
	var errs sdk.ConfigErrors
	for i, s := range c.Servers {
		if len(s.URLs) == 0 {
			errs = append(errs, sdk.Errorf(fmt.Sprintf("ice.servers[%d].urls", i), "needs at least one stun: or turn: URL"))
		}
		for _, u := range s.URLs {
			if _, err := ice.ParseURL(u); err != nil {
				errs = append(errs, sdk.Errorf(fmt.Sprintf("ice.servers[%d].urls", i), "%q: %v", u, err))
			}
		}
	}
	if c.UDPPorts != "" {
		if _, _, err := parsePorts(c.UDPPorts); err != nil {
			errs = append(errs, sdk.Errorf("ice.udp_ports", "%v", err))
		}
	}
	for _, ip := range c.NAT1To1IPs {
		if net.ParseIP(ip) == nil {
			errs = append(errs, sdk.Errorf("ice.nat_1to1_ips", "%q is not an IP address", ip))
		}
	}
	if c.DisconnectedTimeout <= 0 || c.FailedTimeout <= 0 {
		errs = append(errs, sdk.Errorf("ice", "disconnected_timeout and failed_timeout must be positive"))
	}
	return errs
}

// parsePorts parses "8189" (one port, shared by every viewer) or
// "50000-50100" (a range).
func parsePorts(s string) (lo, hi uint16, err error) {
	a, b, isRange := strings.Cut(s, "-")
	l, err1 := strconv.ParseUint(strings.TrimSpace(a), 10, 16)
	h := l
	var err2 error
	if isRange {
		h, err2 = strconv.ParseUint(strings.TrimSpace(b), 10, 16)
	}
	if err1 != nil || err2 != nil || l == 0 || h < l {
		return 0, 0, fmt.Errorf("want a port (8189) or a range (50000-50100), got %q", s)
	}
	return uint16(l), uint16(h), nil
}

// ListenAddrs implements sdk.Listener: the WHEP and pages address, as
// configured, so camd can refuse two outputs on one port.
func (p *WebRTC) ListenAddrs() []string { return []string{p.cfg.Listen} }

// Start implements sdk.Output.
func (p *WebRTC) Start(ctx context.Context) ([]string, error) {
	p.http = &sdk.HTTP{
		Config: p.cfg.HTTPConfig, MaxViewers: p.cfg.MaxViewers, Log: p.log,
		// The player page holds no video; without a token it says how to
		// get one. WHEP itself needs the credential.
		Public: []string{"GET /cameras/{camera}/{$}"},
	}
	if err := p.http.Listen(ctx); err != nil {
		return nil, err // a *ConfigError for "listen"
	}
	// Viewers' media goes where their signalling does: ICE gathers on
	// the address the HTTP server got, unless ice.interfaces says where.
	scope := listenScope(p.http.Addr(), p.cfg.ICE.Interfaces)
	api, err := p.viewerAPI(scope)
	if err != nil {
		_ = p.http.Shutdown(ctx) // nothing served yet
		return nil, err
	}
	p.api = api
	if scope.localOnly && len(p.cfg.ICE.NAT1To1IPs) > 0 {
		p.log.Warn("ice.nat_1to1_ips is set, but ICE gathers on loopback only, as listen does: a port forward cannot reach it; set ice.interfaces (e.g. behind a reverse proxy)",
			"listen", p.cfg.Listen)
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.http.Serve(p.Handler())
	p.mu.Lock()
	p.viewers = map[string]*session{}
	p.whip = map[string]*publisher{}
	for cam, pl := range p.pipes {
		if t, ok := p.cfg.whip[cam]; ok {
			p.whip[cam] = p.startPublisher(pl, t)
		}
	}
	p.mu.Unlock()
	p.log.Info("serving WebRTC", "addr", p.http.Addr().String(), "codec", p.cfg.Codec, "ice", scope.desc, "mdns", p.cfg.ICE.MDNS)
	return p.URLs(), nil
}

// URLs implements sdk.URLReporter: the index, and each camera's player
// page and WHEP endpoint.
func (p *WebRTC) URLs() []string {
	if p.http == nil || p.http.Addr() == nil {
		return nil // not started
	}
	urls := []string{p.http.URL("/")}
	for _, cam := range p.cameras() {
		urls = append(urls, p.http.URL("/cameras/"+cam+"/"), p.http.URL("/cameras/"+cam+"/whep"))
	}
	return urls
}

// netCause strips net's "listen udp <addr>:" framing, which the config
// error already says.
func netCause(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}

// SetCameras implements sdk.CameraSetter: the camera set changes while the
// output runs (a config reload). A removed camera's viewers are hung up,
// its WHIP publisher and encoder stopped and waited for; an added camera
// gets a pipeline (and its publisher); the other cameras' viewers are not
// touched.
func (p *WebRTC) SetCameras(cameras []string) error {
	p.camMu.Lock()
	defer p.camMu.Unlock()
	if p.stopped {
		return errors.New("the output is stopped")
	}
	want := map[string]bool{}
	for _, cam := range cameras {
		want[cam] = true
	}
	p.mu.Lock()
	var added []string
	for cam := range want {
		if p.pipes[cam] == nil {
			added = append(added, cam)
		}
	}
	p.mu.Unlock()
	// New pipelines are made before anything changes, so an error leaves
	// the old set in place.
	fresh := map[string]*pipeline{}
	for _, cam := range added {
		pl, err := newPipeline(cam, p.cfg, p.log.With("camera", cam), p.batch)
		if err != nil {
			return fmt.Errorf("camera %q: %w", cam, err)
		}
		fresh[cam] = pl
	}

	var (
		removed  []*pipeline
		sessions []*session
		pubs     []*publisher
	)
	p.mu.Lock()
	for cam, pl := range p.pipes {
		if !want[cam] {
			delete(p.pipes, cam)
			removed = append(removed, pl)
			if pub := p.whip[cam]; pub != nil {
				delete(p.whip, cam)
				pubs = append(pubs, pub)
			}
		}
	}
	for _, s := range p.viewers {
		if !want[s.cam] {
			sessions = append(sessions, s)
		}
	}
	maps.Copy(p.pipes, fresh)
	if p.whip != nil { // started
		for cam, pl := range fresh {
			if t, ok := p.cfg.whip[cam]; ok {
				p.whip[cam] = p.startPublisher(pl, t)
			}
		}
	}
	p.mu.Unlock()

	for _, s := range sessions {
		s.close("camera removed")
	}
	for _, pub := range pubs {
		pub.stop()
	}
	for _, s := range sessions {
		<-s.done
	}
	for _, pl := range removed {
		pl.stop()
	}
	if len(added) > 0 || len(removed) > 0 {
		gone := make([]string, len(removed))
		for i, pl := range removed {
			gone[i] = pl.cam
		}
		slices.Sort(added)
		slices.Sort(gone)
		p.log.Info("cameras changed", "added", added, "removed", gone, "viewers_hung_up", len(sessions))
	}
	return nil
}

// pipeline returns a camera's pipeline, nil for an unknown camera.
func (p *WebRTC) pipeline(cam string) *pipeline {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pipes[cam]
}

// cameras returns the cameras' names, sorted.
func (p *WebRTC) cameras() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Sorted(maps.Keys(p.pipes))
}

// viewerAPI builds the pion API every viewer's peer connection shares,
// gathering in scope. Viewers share one UDP socket per address (a mux
// opened here, closed by Stop), on the port of ice.udp_ports or any one:
// one socket to forward, and one batch of packets per frame for all
// viewers. A port range gives each viewer a port of its own instead.
// The NAT addresses are appended to the candidates.
func (p *WebRTC) viewerAPI(scope iceScope) (*webrtc.API, error) {
	ic := p.cfg.ICE
	se := p.settings(scope)
	if lo, hi, _ := parsePorts(ic.UDPPorts); lo == hi { // one port, or none given (0)
		n, err := newBatchNet(p.batch)
		if err != nil {
			return nil, err
		}
		mux, err := scope.newUDPMux(int(lo), n, p.logs.NewLogger("ice"))
		if err != nil {
			return nil, sdk.Errorf("ice.udp_ports", "cannot listen on UDP port %d: %v", lo, netCause(err))
		}
		p.udpMux = mux
		se.SetICEUDPMux(mux)
	}
	if len(ic.NAT1To1IPs) > 0 {
		// Appended, so viewers on the LAN still get the local addresses.
		if err := se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{
			External: ic.NAT1To1IPs, AsCandidateType: webrtc.ICECandidateTypeHost, Mode: webrtc.ICEAddressRewriteAppend,
		}); err != nil {
			p.closeMux()
			return nil, fmt.Errorf("ice.nat_1to1_ips: %w", err)
		}
	}
	api, err := p.newAPI(se)
	if err != nil {
		p.closeMux()
	}
	return api, err
}

// publisherAPI builds the pion API of one WHIP session, gathering in
// scope (the route to the SFU). It shares no socket with viewers: it uses
// the ice.udp_ports range if one is set, else any port.
func (p *WebRTC) publisherAPI(scope iceScope) (*webrtc.API, error) {
	return p.newAPI(p.settings(scope))
}

// settings are the ICE settings viewers and publishers share: where to
// gather, the timeouts, mDNS and a port range.
func (p *WebRTC) settings(scope iceScope) webrtc.SettingEngine {
	ic := p.cfg.ICE
	se := webrtc.SettingEngine{LoggerFactory: p.logs}
	scope.apply(&se)
	se.SetICETimeouts(time.Duration(ic.DisconnectedTimeout), time.Duration(ic.FailedTimeout), time.Second)
	mdns := ice.MulticastDNSModeDisabled // pion's default would open UDP 5353 on every interface
	if ic.MDNS {
		mdns = ice.MulticastDNSModeQueryOnly
	}
	se.SetICEMulticastDNSMode(mdns)
	if lo, hi, _ := parsePorts(ic.UDPPorts); lo != 0 && lo < hi {
		_ = se.SetEphemeralUDPPortRange(lo, hi) // fails only for hi < lo, which parsePorts refuses
	}
	return se
}

// newAPI builds a pion API with se: the one codec this output encodes, and
// the interceptors a sender of one shared encoding needs: NACK responses
// (nackResponder, which shares packets between viewers) and sender
// reports. Not pion's defaults: its receiver-side interceptors (NACK
// generator, receiver reports) wake every viewer's connection up to ten
// times a second for streams it never receives, its stats interceptor
// is read by nothing here, and TWCC feedback would steer a per-viewer
// bitrate that one encoder shared by every viewer cannot follow.
func (p *WebRTC) newAPI(se webrtc.SettingEngine) (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: codecs[p.cfg.Codec].capability, PayloadType: 96}, webrtc.RTPCodecTypeVideo); err != nil {
		return nil, err
	}
	// What viewers may send back: lost packets, and a lost picture
	// (readRTCP turns PLI and FIR into a keyframe).
	m.RegisterFeedback(webrtc.RTCPFeedback{Type: "nack"}, webrtc.RTPCodecTypeVideo)
	m.RegisterFeedback(webrtc.RTCPFeedback{Type: "nack", Parameter: "pli"}, webrtc.RTPCodecTypeVideo)
	m.RegisterFeedback(webrtc.RTCPFeedback{Type: "ccm", Parameter: "fir"}, webrtc.RTPCodecTypeVideo)
	reports, err := report.NewSenderInterceptor()
	if err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	ir.Add(nackResponderFactory{})
	ir.Add(reports)
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

func (p *WebRTC) closeMux() {
	if p.udpMux != nil {
		p.udpMux.Close()
		p.udpMux = nil
	}
}

// iceServers returns the configured servers in pion's form.
func (p *WebRTC) iceServers() []webrtc.ICEServer {
	out := make([]webrtc.ICEServer, 0, len(p.cfg.ICE.Servers))
	for _, s := range p.cfg.ICE.Servers {
		out = append(out, webrtc.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
	}
	return out
}

// Stop implements sdk.Output: viewers' peer connections are closed, the
// publishers and encoders stop.
func (p *WebRTC) Stop(ctx context.Context) error {
	p.camMu.Lock()
	defer p.camMu.Unlock()
	if p.stopped {
		return nil
	}
	p.stopped = true
	if p.cancel == nil { // never started
		return p.http.Shutdown(ctx) // a failed Start may have listened
	}
	p.cancel()
	// Request contexts end and no new session is made from here on.
	err := p.http.Shutdown(ctx)
	p.mu.Lock()
	sessions := slices.Collect(maps.Values(p.viewers))
	pubs := slices.Collect(maps.Values(p.whip))
	pipes := slices.Collect(maps.Values(p.pipes))
	p.mu.Unlock()
	for _, s := range sessions {
		s.close("stopping")
	}
	for _, pub := range pubs {
		pub.stop()
	}
	p.closing.Wait()
	for _, pl := range pipes {
		pl.stop()
	}
	p.closeMux()
	return err
}

// HandleFrame implements sdk.Output.
func (p *WebRTC) HandleFrame(f sdk.Frame) {
	if pl := p.pipeline(f.Camera); pl != nil {
		pl.push(f)
	}
}

// Status implements sdk.StatusReporter.
func (p *WebRTC) Status() any {
	p.mu.Lock()
	pipes := maps.Clone(p.pipes)
	pubs := maps.Clone(p.whip)
	n := len(p.viewers)
	p.mu.Unlock()
	cams := map[string]pipelineStatus{}
	for name, pl := range pipes {
		cams[name] = pl.status()
	}
	out := map[string]any{"codec": p.cfg.Codec, "viewers": n, "cameras": cams, "udp_batches": p.batch.status()}
	if p.http != nil {
		hs := p.http.Stats()
		out["refused"], out["http"] = hs.ViewersRefused+hs.ClientRefused, hs
	}
	if len(pubs) > 0 {
		st := map[string]whipState{}
		for cam, pub := range pubs {
			st[cam] = pub.state.snapshot()
		}
		out["whip"] = st
	}
	return out
}

// Interface guards.
var (
	_ sdk.Output         = (*WebRTC)(nil)
	_ sdk.StatusReporter = (*WebRTC)(nil)
	_ sdk.CameraSetter   = (*WebRTC)(nil)
	_ sdk.Listener       = (*WebRTC)(nil)
	_ sdk.URLReporter    = (*WebRTC)(nil)
)
