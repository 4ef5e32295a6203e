package main

import (
	"fmt"
	"image"
	"slices"
	"time"

	"github.com/pion/webrtc/v4"
)

// Encoder turns I420 images into a WebRTC video codec's frames. One encoder
// serves every viewer of a camera.
type Encoder interface {
	// Encode encodes img (4:2:0, the size the encoder was made for) and
	// returns one access unit (H.264 Annex B) or frame (VP8). With key set
	// the frame is a keyframe.
	Encode(img *image.YCbCr, key bool) ([]byte, error)
	Close() error
}

// EncoderConfig sizes and tunes an encoder.
type EncoderConfig struct {
	Width, Height int
	FPS           float64
	BitrateKbps   int
	KeyInterval   time.Duration // at least one keyframe this often
}

// keyFrames returns the keyframe interval in frames.
func (c EncoderConfig) keyFrames() int {
	return max(1, int(c.KeyInterval.Seconds()*c.FPS))
}

// codecSpec is one supported codec: how to build its encoder and how to
// describe it in SDP.
type codecSpec struct {
	newEncoder func(EncoderConfig) (Encoder, error)
	capability webrtc.RTPCodecCapability
}

var rtcpFeedback = []webrtc.RTCPFeedback{
	{Type: "goog-remb"}, {Type: "ccm", Parameter: "fir"}, {Type: "nack"}, {Type: "nack", Parameter: "pli"},
}

// codecs are the encoders this plugin has, by the name used in `codec:`.
var codecs = map[string]codecSpec{
	"h264": {newEncoder: newH264, capability: webrtc.RTPCodecCapability{
		MimeType: webrtc.MimeTypeH264, ClockRate: 90000, RTCPFeedback: rtcpFeedback,
		// OpenH264 emits Constrained Baseline: say exactly that.
		SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
	}},
	"vp8": {newEncoder: newVP8, capability: webrtc.RTPCodecCapability{
		MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: rtcpFeedback,
	}},
}

func codecNames() []string {
	names := make([]string, 0, len(codecs))
	for n := range codecs {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func newEncoder(codec string, c EncoderConfig) (Encoder, error) {
	spec, ok := codecs[codec]
	if !ok {
		return nil, fmt.Errorf("unknown codec %q", codec)
	}
	if c.Width%2 != 0 || c.Height%2 != 0 || c.Width < 16 || c.Height < 16 {
		return nil, fmt.Errorf("%dx%d: encoders need an even size of at least 16x16", c.Width, c.Height)
	}
	return spec.newEncoder(c)
}
