package main

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// sink records what an interceptor writes below itself.
type sink struct {
	mu   sync.Mutex
	sent []rtp.Packet
}

func (s *sink) Write(h *rtp.Header, payload []byte, _ interceptor.Attributes) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent = append(s.sent, rtp.Packet{Header: *h, Payload: payload})
	return len(payload), nil
}

func (s *sink) take() []rtp.Packet {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.sent
	s.sent = nil
	return out
}

// rtcpFrom is an RTCP reader that returns the packets given, one per Read.
func rtcpFrom(pkts ...rtcp.Packet) interceptor.RTCPReader {
	return interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		raw, err := pkts[0].Marshal()
		if err != nil {
			return 0, nil, err
		}
		pkts = pkts[1:]
		return copy(b, raw), a, nil
	})
}

func TestNACKResponder(t *testing.T) {
	const ssrc, pt = 1111, 96
	nack := func(media uint32, seqs ...uint16) *rtcp.TransportLayerNack {
		return &rtcp.TransportLayerNack{MediaSSRC: media, Nacks: rtcp.NackPairsFromSequenceNumbers(seqs)}
	}
	tests := []struct {
		name  string
		sent  int // packets sent before the NACKs, seq 0, 1, …
		nacks []*rtcp.TransportLayerNack
		want  []uint16 // sequence numbers resent, in order
	}{
		{"a held packet is resent", 10, []*rtcp.TransportLayerNack{nack(ssrc, 3)}, []uint16{3}},
		{"every packet of a NACK, in order", 10, []*rtcp.TransportLayerNack{nack(ssrc, 2, 4, 5, 9)}, []uint16{2, 4, 5, 9}},
		{"a packet not sent yet is not", 10, []*rtcp.TransportLayerNack{nack(ssrc, 10)}, nil},
		{"a packet older than the history is not", nackHistory + 5, []*rtcp.TransportLayerNack{nack(ssrc, 2, 6)}, []uint16{6}},
		{"a repeated NACK within resendGap gets one resend", 10, []*rtcp.TransportLayerNack{nack(ssrc, 3), nack(ssrc, 3)}, []uint16{3}},
		{"another stream's NACK is not this one's", 10, []*rtcp.TransportLayerNack{nack(2222, 3)}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := nackResponderFactory{}
			ic, err := f.NewInterceptor("")
			if err != nil {
				t.Fatal(err)
			}
			var out sink
			w := ic.BindLocalStream(&interceptor.StreamInfo{SSRC: ssrc, PayloadType: pt}, &out)
			payloads := map[uint16][]byte{}
			for i := 0; i < tc.sent; i++ {
				seq := uint16(i)
				p := []byte{byte(i), byte(i >> 8), 0xaa}
				payloads[seq] = p
				h := rtp.Header{Version: 2, PayloadType: pt, SSRC: ssrc, SequenceNumber: seq, Timestamp: 3000 * uint32(i/3), Marker: i%3 == 2}
				if _, err := w.Write(&h, p, nil); err != nil {
					t.Fatal(err)
				}
			}
			out.take()
			pkts := make([]rtcp.Packet, len(tc.nacks))
			for i, n := range tc.nacks {
				pkts[i] = n
			}
			r := ic.BindRTCPReader(rtcpFrom(pkts...))
			buf := make([]byte, 1500)
			for range tc.nacks {
				n, _, err := r.Read(buf, nil)
				if err != nil {
					t.Fatal(err)
				}
				// The viewer's RTCP goes on to the reader above, unchanged.
				if got, err := rtcp.Unmarshal(buf[:n]); err != nil || len(got) != 1 {
					t.Fatalf("RTCP passed on: %v, %v", got, err)
				}
			}
			resent := out.take()
			var seqs []uint16
			for _, p := range resent {
				seqs = append(seqs, p.SequenceNumber)
				i := int(p.SequenceNumber)
				want := rtp.Header{Version: 2, PayloadType: pt, SSRC: ssrc, SequenceNumber: p.SequenceNumber, Timestamp: 3000 * uint32(i/3), Marker: i%3 == 2}
				if p.Header.Version != 2 || p.Header.PayloadType != want.PayloadType || p.Header.SSRC != want.SSRC ||
					p.Header.Timestamp != want.Timestamp || p.Header.Marker != want.Marker {
					t.Errorf("resent header %+v, want %+v", p.Header, want)
				}
				// The payload is the one sent, not a copy of it.
				if orig := payloads[p.SequenceNumber]; len(p.Payload) != len(orig) || &p.Payload[0] != &orig[0] {
					t.Errorf("seq %d: resent payload is not the packet's own", p.SequenceNumber)
				}
			}
			if !slices.Equal(seqs, tc.want) {
				t.Errorf("resent %v, want %v", seqs, tc.want)
			}
		})
	}
}

// TestNACKOverSRTP: a real pion viewer that says it lost a packet gets it
// again, through the plugin's whole sending path (SRTP included). The
// viewer turns off SRTP replay protection: the packet it asks for did
// arrive (loopback loses nothing), and would otherwise be dropped as a
// replay.
func TestNACKOverSRTP(t *testing.T) {
	h, base := start(t, []string{"cam"}, "")
	feed(t, h, "cam", simFrames(t, 320, 240, 30))
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.DisableSRTPReplayProtection(true)
	v, _, err := dialWHEPSettings(t, base+"/cameras/cam/whep", nil, se)
	if err != nil {
		t.Fatal(err)
	}
	v.waitFrames(t, 1, 30*time.Second)

	seen := map[uint16]int{}
	var (
		asked  = -1
		ssrc   uint32
		gotTwo = make(chan struct{})
	)
	v.mu.Lock()
	v.onPacket = func(p *rtp.Packet) {
		seen[p.SequenceNumber]++
		if asked < 0 {
			asked, ssrc = int(p.SequenceNumber), p.SSRC
			go func(seq uint16, ssrc uint32) {
				if err := v.pc.WriteRTCP([]rtcp.Packet{&rtcp.TransportLayerNack{MediaSSRC: ssrc, Nacks: rtcp.NackPairsFromSequenceNumbers([]uint16{seq})}}); err != nil {
					t.Errorf("send NACK: %v", err)
				}
			}(p.SequenceNumber, p.SSRC)
		}
		if int(p.SequenceNumber) == asked && seen[p.SequenceNumber] == 2 {
			close(gotTwo)
		}
	}
	v.mu.Unlock()
	select {
	case <-gotTwo:
	case <-time.After(30 * time.Second):
		v.mu.Lock()
		defer v.mu.Unlock()
		t.Fatalf("asked again for packet %d (SSRC %d): got it %d times, want 2", asked, ssrc, seen[uint16(asked)])
	}
}
