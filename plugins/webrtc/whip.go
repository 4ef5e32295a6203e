package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
)

// whipState is a publisher's state, for Status.
type whipState struct {
	mu       sync.Mutex
	URL      string `json:"url"`
	State    string `json:"state"`
	Connects int    `json:"connects"`
	LastErr  string `json:"last_error,omitempty"`
}

func (s *whipState) set(state string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.State = state
	if state == "connected" {
		s.Connects++
	}
	if err != nil {
		s.LastErr = err.Error()
	}
}

func (s *whipState) snapshot() whipState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return whipState{URL: s.URL, State: s.State, Connects: s.Connects, LastErr: s.LastErr}
}

// publisher is a running publish loop for one camera.
type publisher struct {
	state  *whipState
	cancel context.CancelFunc
	done   chan struct{} // closed when publish has returned
}

// startPublisher starts publishing pl's camera to t until stop or Stop.
func (p *WebRTC) startPublisher(pl *pipeline, t WHIPTarget) *publisher {
	ctx, cancel := context.WithCancel(p.ctx)
	pub := &publisher{state: &whipState{URL: t.URL, State: "starting"}, cancel: cancel, done: make(chan struct{})}
	// A publisher wants the camera's frames all the time it runs.
	release := p.demand.Hold(pl.cam)
	go func() {
		defer close(pub.done)
		defer release()
		p.publish(ctx, pl, t, pub.state)
	}()
	return pub
}

// stop ends the publisher (the session at the SFU is deleted) and waits
// for it.
func (pub *publisher) stop() {
	pub.cancel()
	<-pub.done
}

// publish keeps a camera published to a WHIP endpoint (an SFU such as
// MediaMTX, LiveKit, Janus or Cloudflare) until ctx ends, reconnecting with
// backoff. The SFU gets the same track, and so the same encoder, as local
// viewers: the camera is encoded once however many watch.
func (p *WebRTC) publish(ctx context.Context, pl *pipeline, t WHIPTarget, st *whipState) {
	backoff := time.Second
	for ctx.Err() == nil {
		began := time.Now()
		err := p.publishOnce(ctx, pl, t, st)
		if ctx.Err() != nil {
			break
		}
		if time.Since(began) > time.Minute {
			backoff = time.Second // it was up for a while: a new problem
		}
		st.set("retrying", err)
		p.log.Warn("WHIP publish failed; retrying", "camera", pl.cam, "url", t.URL, "err", err, "in", backoff.String())
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
	st.set("stopped", nil)
}

// publishOnce runs one WHIP session: offer, answer, media until the
// connection fails or ctx ends (then the session is deleted at the SFU).
func (p *WebRTC) publishOnce(ctx context.Context, pl *pipeline, t WHIPTarget, st *whipState) error {
	st.set("connecting", nil)
	// The publisher dials out, whatever listen says: it gathers where the
	// route to the SFU starts, looked up afresh for every session (a
	// laptop changes networks, DNS changes answers).
	u, err := url.Parse(t.URL)
	if err != nil {
		return err
	}
	scope, err := routeScope(ctx, u.Hostname())
	if err != nil {
		return err
	}
	api, err := p.publisherAPI(scope)
	if err != nil {
		return err
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{ICEServers: p.iceServers()})
	if err != nil {
		return err
	}
	tr, err := pc.AddTransceiverFromTrack(pl.track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		pc.Close()
		return err
	}
	rtcpDone := make(chan struct{})
	go func() {
		defer close(rtcpDone)
		pl.readRTCP(tr.Sender())
	}()
	defer func() {
		pc.Close()
		<-rtcpDone // ReadRTCP returns once the connection is closed
	}()
	ended := make(chan webrtc.PeerConnectionState, 1)
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		switch s {
		case webrtc.PeerConnectionStateConnected:
			st.set("connected", nil)
			p.log.Info("WHIP publishing", "camera", pl.cam, "url", t.URL, "ice", scope.desc)
			pl.viewerConnected()
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			select {
			case ended <- s:
			default:
			}
		}
	})

	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return err
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return err
	}
	select {
	case <-gathered:
	case <-time.After(gatherTimeout):
	case <-ctx.Done():
		return ctx.Err()
	}
	answer, resource, err := whipPost(ctx, t, pc.LocalDescription().SDP)
	if err != nil {
		return err
	}
	defer func() {
		// Tell the SFU we are gone, even though ctx may be over.
		dctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(dctx, http.MethodDelete, resource, nil)
		if t.Token != "" {
			req.Header.Set("Authorization", "Bearer "+t.Token)
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		return fmt.Errorf("bad answer from %s: %w", t.URL, err)
	}
	release, err := pl.acquire()
	if err != nil {
		return err
	}
	defer release()
	select {
	case <-ctx.Done():
		return nil
	case s := <-ended:
		return fmt.Errorf("connection %s", s)
	}
}

// whipPost sends the offer and returns the answer and the session's
// resource URL.
func whipPost(ctx context.Context, t WHIPTarget, offer string) (answer, resource string, err error) {
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(pctx, http.MethodPost, t.URL, bytes.NewBufferString(offer))
	if err != nil {
		return "", "", err
	}
	req.Header.Set("Content-Type", "application/sdp")
	if t.Token != "" {
		req.Header.Set("Authorization", "Bearer "+t.Token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxOfferBytes))
	if err != nil {
		return "", "", err
	}
	if resp.StatusCode != http.StatusCreated {
		return "", "", fmt.Errorf("%s answered %s: %s", t.URL, resp.Status, bytes.TrimSpace(body[:min(len(body), 200)]))
	}
	loc, err := resp.Location()
	if err != nil {
		return "", "", errors.New(t.URL + " answered without a Location for the session")
	}
	return string(body), loc.String(), nil // resolved against t.URL
}
