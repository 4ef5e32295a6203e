package main

import (
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

const (
	// nackHistory is how many packets a viewer can ask again for: about
	// 1.6 s at the default 1,500 kbps, 0.5 s at 5,000, ample for a LAN's
	// or Wi-Fi's round trip. A power of two, for the ring's index.
	nackHistory = 256
	// resendGap is the least time between two resends of one packet: a
	// receiver repeats its NACK until the packet arrives, and a flood of
	// NACKs must not turn into a flood of packets.
	resendGap = 20 * time.Millisecond
)

// nackResponder is an interceptor that resends the packets viewers ask
// for again (RTCP generic NACK). pion's own keeps a copy of every packet
// per viewer (1,024 buffers of 1,460 bytes: 1.5 MB a viewer); this one
// keeps per viewer only the RTP fields that differ per packet, and the
// payload the packetizer allocated, which every viewer of a camera shares
// and nothing writes to after (SRTP encrypts into a buffer of its own).
// Headers are rebuilt on resend: the packets sent here carry no header
// extensions (none is negotiated).
type nackResponder struct {
	interceptor.NoOp
	mu      sync.Mutex
	streams map[uint32]*sentRing // by SSRC
}

// nackResponderFactory makes one responder per peer connection.
type nackResponderFactory struct{}

func (nackResponderFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &nackResponder{streams: map[uint32]*sentRing{}}, nil
}

// sentRing is one local stream's last nackHistory packets.
type sentRing struct {
	w     interceptor.RTPWriter // the stream's writer, below this interceptor
	ssrc  uint32
	pt    uint8
	mu    sync.Mutex
	slots [nackHistory]sentPacket
}

type sentPacket struct {
	payload []byte // shared; nil: empty slot
	ts      uint32
	resent  int64 // monotonic ns of the last resend
	seq     uint16
	marker  bool
}

// BindLocalStream records what the stream sends.
func (n *nackResponder) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	r := &sentRing{w: w, ssrc: info.SSRC, pt: info.PayloadType}
	n.mu.Lock()
	n.streams[info.SSRC] = r
	n.mu.Unlock()
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		if h.SSRC == r.ssrc {
			r.mu.Lock()
			r.slots[h.SequenceNumber%nackHistory] = sentPacket{payload: payload, ts: h.Timestamp, seq: h.SequenceNumber, marker: h.Marker}
			r.mu.Unlock()
		}
		return w.Write(h, payload, a)
	})
}

// UnbindLocalStream forgets the stream (and its payloads).
func (n *nackResponder) UnbindLocalStream(info *interceptor.StreamInfo) {
	n.mu.Lock()
	delete(n.streams, info.SSRC)
	n.mu.Unlock()
}

// BindRTCPReader answers the NACKs in what the viewer sends; the packets
// are passed on unchanged.
func (n *nackResponder) BindRTCPReader(reader interceptor.RTCPReader) interceptor.RTCPReader {
	return interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		i, a, err := reader.Read(b, a)
		if err != nil {
			return 0, nil, err
		}
		if a == nil {
			a = make(interceptor.Attributes)
		}
		pkts, err := a.GetRTCPPackets(b[:i]) // parsed once for every interceptor
		if err != nil {
			return 0, nil, err
		}
		for _, p := range pkts {
			if nack, ok := p.(*rtcp.TransportLayerNack); ok {
				n.mu.Lock()
				r := n.streams[nack.MediaSSRC]
				n.mu.Unlock()
				if r != nil {
					r.resend(nack.Nacks)
				}
			}
		}
		return i, a, nil
	})
}

// resend sends again the listed packets still held, each at most once per
// resendGap.
func (r *sentRing) resend(pairs []rtcp.NackPair) {
	now := time.Now().UnixNano()
	for _, pair := range pairs {
		pair.Range(func(seq uint16) bool {
			r.mu.Lock()
			s := &r.slots[seq%nackHistory]
			ok := s.payload != nil && s.seq == seq && now-s.resent >= int64(resendGap)
			var p sentPacket
			if ok {
				s.resent = now
				p = *s
			}
			r.mu.Unlock()
			if ok {
				h := rtp.Header{Version: 2, Marker: p.marker, PayloadType: r.pt, SequenceNumber: seq, Timestamp: p.ts, SSRC: r.ssrc}
				_, _ = r.w.Write(&h, p.payload, nil) // a failed write is the connection's to report
			}
			return true
		})
	}
}
