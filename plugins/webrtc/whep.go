package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
)

const (
	maxOfferBytes = 256 << 10
	// gatherTimeout bounds non-trickle ICE gathering: with an unreachable
	// STUN server the answer goes out with the candidates found so far.
	gatherTimeout = 5 * time.Second
	// connectTimeout drops a session whose viewer never completes ICE (it
	// posted an offer and went away).
	connectTimeout = 15 * time.Second
)

// session is one WHEP viewer: a peer connection on its camera's track.
type session struct {
	id, cam, remote string
	p               *WebRTC
	pc              *webrtc.PeerConnection
	sender          *webrtc.RTPSender
	release         func() // gives the pipeline and the viewer slot back
	connected       chan struct{}
	timer           *time.Timer   // connectTimeout
	rtcpDone        chan struct{} // closed when the RTCP reader has returned
	done            chan struct{} // closed when the session is closed and its goroutines gone
	once            sync.Once
}

// close ends the session: its pipeline user is released and the peer
// connection closed (done is closed after). Safe to call more than once
// and from pion callbacks.
func (s *session) close(reason string) {
	s.once.Do(func() {
		// Counted before the session leaves the map, so Stop, which closes
		// what is in the map and then waits, waits for this one too.
		s.p.closing.Add(1)
		s.p.mu.Lock()
		delete(s.p.viewers, s.id)
		s.p.mu.Unlock()
		s.timer.Stop()
		s.release()
		go func() { // not inline: pion callbacks may be holding its locks
			defer s.p.closing.Done()
			defer close(s.done)
			s.pc.Close()
			<-s.rtcpDone // ReadRTCP returns once the connection is closed
		}()
		s.p.log.Info("viewer left", "camera", s.cam, "session", s.id, "remote", s.remote, "reason", reason)
	})
}

// Handler returns the plugin's HTTP routes.
func (p *WebRTC) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", p.serveIndex)
	mux.HandleFunc("GET /cameras/{camera}/{$}", p.servePlayer)
	mux.HandleFunc("POST /cameras/{camera}/whep", p.serveWHEP)
	mux.HandleFunc("OPTIONS /cameras/{camera}/whep", p.serveOptions)
	mux.HandleFunc("DELETE /cameras/{camera}/whep/{id}", p.serveDelete)
	mux.HandleFunc("OPTIONS /cameras/{camera}/whep/{id}", p.serveOptions)
	mux.HandleFunc("PATCH /cameras/{camera}/whep/{id}", func(w http.ResponseWriter, r *http.Request) {
		// Non-trickle: the answer already carries every candidate.
		w.Header().Set("Allow", "DELETE, OPTIONS")
		http.Error(w, "trickle ICE is not supported: the answer holds all candidates", http.StatusMethodNotAllowed)
	})
	return signalling(mux)
}

const (
	// requestReadTimeout and requestWriteTimeout bound one signalling
	// request: reading an offer, and answering (which waits for ICE
	// gathering, at most gatherTimeout). Media goes over UDP, not here.
	requestReadTimeout  = 10 * time.Second
	requestWriteTimeout = 30 * time.Second
)

// signalling sets deadlines on every route: each request here is short,
// and the SDK's server sets none (it also serves streams). CORS is the
// SDK's too: it answers, for the allowed origins only, with the methods
// and exposed headers (Location, Link, ETag, Accept-Post) WHEP needs.
func signalling(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		now := time.Now()
		_ = rc.SetReadDeadline(now.Add(requestReadTimeout))
		_ = rc.SetWriteDeadline(now.Add(requestWriteTimeout))
		h.ServeHTTP(w, r)
	})
}

// serveOptions answers OPTIONS, a CORS preflight or a WHEP client asking
// what the endpoint accepts.
func (p *WebRTC) serveOptions(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	if r.PathValue("id") == "" {
		hd.Set("Accept-Post", "application/sdp")
		p.setICELinks(hd)
	}
	w.WriteHeader(http.StatusNoContent)
}

// setICELinks advertises the ICE servers as WHEP prescribes, so clients
// need no separate configuration.
func (p *WebRTC) setICELinks(hd http.Header) {
	for _, s := range p.cfg.ICE.Servers {
		for _, u := range s.URLs {
			l := fmt.Sprintf(`<%s>; rel="ice-server"`, u)
			if s.Username != "" {
				l += `; username=` + quotedString(s.Username) + `; credential=` + quotedString(s.Credential) + `; credential-type="password"`
			}
			hd.Add("Link", l)
		}
	}
}

// quotedString quotes s as HTTP does (RFC 9110): only " and \ are
// escaped, so a client's plain unescaping gets s back (Go's %q would also
// escape non-ASCII, which no WHEP client undoes).
func quotedString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// serveWHEP answers an SDP offer: a viewer joins its camera's track.
func (p *WebRTC) serveWHEP(w http.ResponseWriter, r *http.Request) {
	cam := r.PathValue("camera")
	pl := p.pipeline(cam)
	if pl == nil {
		http.Error(w, "no such camera", http.StatusNotFound)
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/sdp" {
		http.Error(w, "want an SDP offer with Content-Type: application/sdp", http.StatusUnsupportedMediaType)
		return
	}
	offer, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxOfferBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			http.Error(w, "offer too large", http.StatusRequestEntityTooLarge)
		} else {
			http.Error(w, "cannot read offer", http.StatusBadRequest)
		}
		return
	}

	// An offer that cannot be served takes nothing: no slot, no encoder,
	// no wake-up of an on_demand camera.
	if status, err := checkOffer(string(offer), codecs[p.cfg.Codec].capability.MimeType); err != nil {
		http.Error(w, err.Error(), status)
		return
	}
	// A viewer slot, per client and in all, from offer to hang-up.
	slot, ok := p.http.Acquire(w, r)
	if !ok {
		return // refused with 429 or 503 and Retry-After
	}
	s, err := p.newSession(cam, r.RemoteAddr, pl, slot)
	if err != nil {
		slot()
	}
	p.mu.Lock()
	// The camera may have been removed meanwhile; SetCameras hangs up
	// only the sessions it finds in the map.
	gone := p.pipes[cam] != pl
	if err == nil && !gone {
		p.viewers[s.id] = s
	}
	p.mu.Unlock()
	if err == nil && gone {
		s.close("camera removed")
		err = errCameraGone
	}
	if errors.Is(err, errCameraGone) {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	answer, status, err := p.answer(s, string(offer))
	if err != nil {
		s.close("negotiation failed")
		http.Error(w, err.Error(), status)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", "application/sdp")
	hd.Set("Location", "/cameras/"+cam+"/whep/"+s.id)
	hd.Set("ETag", `"`+s.id+`"`)
	p.setICELinks(hd)
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, answer)
	p.log.Info("viewer joined", "camera", cam, "session", s.id, "remote", r.RemoteAddr)
}

// newSession builds a viewer's peer connection on the camera's shared
// track; closing the session releases slot, the viewer's place under the
// HTTP server's caps. Its callbacks close it when the connection fails,
// or when it has not connected within connectTimeout.
func (p *WebRTC) newSession(cam, remote string, pl *pipeline, slot func()) (*session, error) {
	cert, err := p.certs.get()
	if err != nil {
		return nil, err
	}
	pc, err := p.api.NewPeerConnection(webrtc.Configuration{ICEServers: p.iceServers(), Certificates: cert})
	if err != nil {
		return nil, fmt.Errorf("cannot create peer connection: %w", err)
	}
	sender, err := pc.AddTrack(pl.track)
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("cannot add track: %w", err)
	}
	user, err := pl.acquire()
	if err != nil {
		pc.Close()
		return nil, err
	}
	release := func() { user(); slot() }
	s := &session{id: newID(), cam: cam, remote: remote, p: p, pc: pc, sender: sender, release: release,
		connected: make(chan struct{}), rtcpDone: make(chan struct{}), done: make(chan struct{})}
	s.timer = time.AfterFunc(connectTimeout, func() {
		select {
		case <-s.connected:
		default:
			s.close("never connected")
		}
	})
	go func() {
		defer close(s.rtcpDone)
		pl.readRTCP(sender)
	}()
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateConnected:
			select {
			case <-s.connected:
			default:
				close(s.connected)
			}
			pl.viewerConnected()
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			s.close("connection " + st.String())
		}
	})
	return s, nil
}

// answer answers the viewer's offer with all candidates (non-trickle).
func (p *WebRTC) answer(s *session, offer string) (string, int, error) {
	pc, sender := s.pc, s.sender
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", http.StatusBadRequest, fmt.Errorf("bad offer: %w", err)
	}
	if len(sender.GetParameters().Codecs) == 0 {
		return "", http.StatusNotAcceptable, fmt.Errorf("the offer does not accept %s video, which this output sends (codec: %s)", codecs[p.cfg.Codec].capability.MimeType, p.cfg.Codec)
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", http.StatusBadRequest, fmt.Errorf("cannot answer the offer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		return "", http.StatusBadRequest, fmt.Errorf("cannot answer the offer: %w", err)
	}
	select {
	case <-gathered:
	case <-time.After(gatherTimeout):
		p.log.Warn("ICE gathering timed out; answering with the candidates found", "camera", s.cam)
	}
	return pc.LocalDescription().SDP, 0, nil
}

func (p *WebRTC) serveDelete(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	s := p.viewers[r.PathValue("id")]
	p.mu.Unlock()
	if s == nil || s.cam != r.PathValue("camera") {
		http.Error(w, "no such session", http.StatusNotFound)
		return
	}
	s.close("viewer hung up")
	w.WriteHeader(http.StatusOK)
}

func newID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
