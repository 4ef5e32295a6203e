package main

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/pion/sdp/v3"
)

// maxOfferCandidates bounds the ICE candidates an offer may list. Each is
// checked with STUN packets for seconds: thousands (which fit in an
// offer) would cost the plugin a core and send a flood of UDP to
// addresses the client chose. Browsers list a handful.
const maxOfferCandidates = 50

// checkOffer refuses, before anything is set up for it, an offer this
// output cannot serve: not SDP, too many candidates, or no video section
// that can receive mime (port not 0, not sendonly or inactive, the codec
// offered, H.264 in packetization-mode 1, which the packetizer sends). It
// returns the HTTP status and why.
func checkOffer(offer, mime string) (int, error) {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(offer); err != nil {
		return http.StatusBadRequest, fmt.Errorf("bad offer: %w", err)
	}
	n := 0
	for _, m := range d.MediaDescriptions {
		for _, a := range m.Attributes {
			if a.Key == "candidate" {
				n++
			}
		}
	}
	for _, a := range d.Attributes {
		if a.Key == "candidate" {
			n++
		}
	}
	if n > maxOfferCandidates {
		return http.StatusBadRequest, fmt.Errorf("bad offer: %d ICE candidates, at most %d", n, maxOfferCandidates)
	}
	why := "it has no video section"
	for _, m := range d.MediaDescriptions {
		if m.MediaName.Media != "video" {
			continue
		}
		switch {
		case m.MediaName.Port.Value == 0 && !hasAttr(m, "bundle-only"):
			why = "its video section is rejected (port 0)"
		case direction(&d, m) == "sendonly" || direction(&d, m) == "inactive":
			why = "its video section does not receive (" + direction(&d, m) + "): this is a WHEP player's endpoint, not WHIP's"
		default:
			ok, codecWhy := offersCodec(m, mime)
			if ok {
				return 0, nil
			}
			why = codecWhy
		}
	}
	return http.StatusNotAcceptable, fmt.Errorf("the offer cannot receive this output's video: %s", why)
}

// direction returns a media section's direction, else the session's,
// else sendrecv.
func direction(d *sdp.SessionDescription, m *sdp.MediaDescription) string {
	for _, attrs := range [][]sdp.Attribute{m.Attributes, d.Attributes} {
		for _, a := range attrs {
			switch a.Key {
			case "sendrecv", "sendonly", "recvonly", "inactive":
				return a.Key
			}
		}
	}
	return "sendrecv"
}

// offersCodec reports whether m offers mime (e.g. video/H264) in a form the
// output sends; else why not.
func offersCodec(m *sdp.MediaDescription, mime string) (bool, string) {
	name := strings.TrimPrefix(mime, "video/")
	fmtp := map[string]string{}
	for _, a := range m.Attributes {
		if a.Key == "fmtp" {
			pt, params, _ := strings.Cut(a.Value, " ")
			fmtp[pt] = params
		}
	}
	found := false
	for _, a := range m.Attributes {
		if a.Key != "rtpmap" {
			continue
		}
		pt, enc, _ := strings.Cut(a.Value, " ")
		codec, _, _ := strings.Cut(enc, "/")
		if !strings.EqualFold(codec, name) {
			continue
		}
		found = true
		if !strings.EqualFold(name, "H264") || packetizationMode(fmtp[pt]) == "1" {
			return true, ""
		}
	}
	if found {
		return false, "it offers H.264 only in packetization-mode 0 (single NAL units); this output sends mode 1"
	}
	return false, "it does not offer " + mime + ", which this output sends (codec)"
}

// packetizationMode returns an H.264 fmtp line's packetization-mode, "0"
// when it says none (RFC 6184's default).
func packetizationMode(fmtp string) string {
	for _, p := range strings.Split(fmtp, ";") {
		if k, v, ok := strings.Cut(strings.TrimSpace(p), "="); ok && strings.EqualFold(k, "packetization-mode") {
			return strings.TrimSpace(v)
		}
	}
	return "0"
}

func hasAttr(m *sdp.MediaDescription, key string) bool {
	for _, a := range m.Attributes {
		if a.Key == key {
			return true
		}
	}
	return false
}
