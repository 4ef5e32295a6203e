package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/camd/camd/sdk/sdktest"
)

// offerSDP is a browser-like offer; video is its video section's lines
// after the m-line, extra goes at the end.
func offerSDP(mline, video, extra string) string {
	s := "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n" +
		mline + "\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n" +
		"a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n" +
		"a=setup:actpass\r\na=rtcp-mux\r\n" + video + extra
	return s
}

const h264Mode1 = "a=recvonly\r\na=rtpmap:102 H264/90000\r\na=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n"

// What an offer must hold for a WHEP viewer of this output, checked before
// anything is set up for it.
func TestCheckOffer(t *testing.T) {
	var many strings.Builder
	for i := range maxOfferCandidates + 1 {
		fmt.Fprintf(&many, "a=candidate:%d 1 udp 2113937151 127.0.%d.%d %d typ host\r\n", i, i/250, i%250+1, 10000+i)
	}
	const m = "m=video 9 UDP/TLS/RTP/SAVPF 102"
	for _, tc := range []struct {
		name, offer, mime string
		status            int
		why               string
	}{
		{"a browser's H.264 offer", offerSDP(m, h264Mode1, ""), "video/H264", 0, ""},
		{"VP8", offerSDP("m=video 9 UDP/TLS/RTP/SAVPF 96", "a=recvonly\r\na=rtpmap:96 VP8/90000\r\n", ""), "video/VP8", 0, ""},
		{"sendrecv by default", offerSDP(m, strings.Replace(h264Mode1, "a=recvonly\r\n", "", 1), ""), "video/H264", 0, ""},
		{"a few candidates", offerSDP(m, h264Mode1, "a=candidate:1 1 udp 2113937151 192.168.1.5 5000 typ host\r\n"), "video/H264", 0, ""},
		{"not SDP", "hello", "video/H264", http.StatusBadRequest, "bad offer"},
		{"too many candidates", offerSDP(m, h264Mode1, many.String()), "video/H264", http.StatusBadRequest, "ICE candidates, at most"},
		{"audio only", offerSDP("m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=rtpmap:111 opus/48000/2\r\n", ""), "video/H264", http.StatusNotAcceptable, "no video section"},
		{"video rejected", offerSDP("m=video 0 UDP/TLS/RTP/SAVPF 102", h264Mode1, ""), "video/H264", http.StatusNotAcceptable, "port 0"},
		{"video bundle-only (RFC 9143)", offerSDP("m=video 0 UDP/TLS/RTP/SAVPF 102", "a=bundle-only\r\n"+h264Mode1, ""), "video/H264", 0, ""},
		{"sendonly (a WHIP offer)", offerSDP(m, strings.Replace(h264Mode1, "recvonly", "sendonly", 1), ""), "video/H264", http.StatusNotAcceptable, "does not receive (sendonly)"},
		{"inactive", offerSDP(m, strings.Replace(h264Mode1, "recvonly", "inactive", 1), ""), "video/H264", http.StatusNotAcceptable, "does not receive (inactive)"},
		{"VP9 only", offerSDP("m=video 9 UDP/TLS/RTP/SAVPF 98", "a=recvonly\r\na=rtpmap:98 VP9/90000\r\n", ""), "video/H264", http.StatusNotAcceptable, "does not offer video/H264"},
		{"H.264 mode 0", offerSDP(m, strings.Replace(h264Mode1, "packetization-mode=1", "packetization-mode=0", 1), ""), "video/H264", http.StatusNotAcceptable, "packetization-mode 0"},
		{"H.264 without fmtp (mode 0)", offerSDP(m, "a=recvonly\r\na=rtpmap:102 H264/90000\r\n", ""), "video/H264", http.StatusNotAcceptable, "packetization-mode 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, err := checkOffer(tc.offer, tc.mime)
			if status != tc.status || (err == nil) != (tc.why == "") || (err != nil && !strings.Contains(err.Error(), tc.why)) {
				t.Fatalf("checkOffer: %d %v; want %d %q", status, err, tc.status, tc.why)
			}
		})
	}
}

// An offer refused by checkOffer takes nothing on the way: no encoder
// starts, no viewer slot is held.
func TestRefusedOfferTakesNothing(t *testing.T) {
	p := &WebRTC{}
	h := sdktest.New(t, p)
	urls, err := h.Start("rtc", []string{"a"}, "listen: 127.0.0.1:0\ncodec: vp8\n")
	if err != nil {
		t.Fatal(err)
	}
	feedCameras(t, h, simFrames(t, 160, 120, 10), "a")
	whep := strings.TrimSuffix(urls[0], "/") + "/cameras/a/whep"
	vp9 := offerSDP("m=video 9 UDP/TLS/RTP/SAVPF 98", "a=recvonly\r\na=rtpmap:98 VP9/90000\r\n", "")
	for range 20 {
		resp, err := http.Post(whep, "application/sdp", strings.NewReader(vp9))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotAcceptable || !strings.Contains(string(body), "does not offer video/VP8") {
			t.Fatalf("a VP9-only offer: %s %s", resp.Status, body)
		}
	}
	if st := camStatus(t, h, "a"); st["encoders_started"] != 0.0 {
		t.Fatalf("refused offers started %v encoders", st["encoders_started"])
	}
	if n := h.Status()["viewers"]; n != 0.0 {
		t.Fatalf("refused offers hold %v viewers", n)
	}
}

// TURN credentials go into Link headers as HTTP quoted-strings: only " and
// \ escaped, so a player's plain unescaping gets them back whole.
func TestQuotedString(t *testing.T) {
	for in, want := range map[string]string{
		"plain":    `"plain"`,
		`a"b\c`:    `"a\"b\\c"`,
		"pässwörd": `"pässwörd"`,
	} {
		if got := quotedString(in); got != want {
			t.Errorf("quotedString(%q) = %s, want %s", in, got, want)
		}
	}
}
