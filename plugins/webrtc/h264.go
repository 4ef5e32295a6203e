package main

import (
	"errors"
	"image"

	"github.com/pion/mediadevices/pkg/codec"
	"github.com/pion/mediadevices/pkg/codec/openh264"
	"github.com/pion/mediadevices/pkg/prop"
)

// h264 is OpenH264 (BSD, its static library ships inside the Go module):
// Constrained Baseline, which every WebRTC browser decodes.
type h264 struct {
	rc  codec.ReadCloser
	in  pushReader
	key codec.KeyFrameController
}

// pushReader hands the encoder the image we want encoded next:
// mediadevices' encoders pull from a video.Reader.
type pushReader struct{ img image.Image }

func (p *pushReader) Read() (image.Image, func(), error) { return p.img, func() {}, nil }

func newH264(c EncoderConfig) (Encoder, error) {
	p, err := openh264.NewParams()
	if err != nil {
		return nil, err
	}
	p.BitRate = c.BitrateKbps * 1000
	p.IntraPeriod = uint(c.keyFrames())
	// Frame skipping is what lets OpenH264's rate control hold the
	// bitrate; a skipped frame comes out empty.
	p.EnableFrameSkip = true
	p.MultipleThreadIdc = 1 // extra threads stall on small machines
	p.SliceMode = openh264.SMSingleSlice
	e := &h264{}
	rc, err := p.BuildVideoEncoder(&e.in, prop.Media{Video: prop.Video{
		Width: c.Width, Height: c.Height, FrameRate: float32(c.FPS), FrameFormat: "I420",
	}})
	if err != nil {
		return nil, err
	}
	e.rc = rc
	kc, ok := rc.Controller().(codec.KeyFrameController)
	if !ok {
		rc.Close()
		return nil, errors.New("openh264: no keyframe control")
	}
	e.key = kc
	return e, nil
}

func (e *h264) Encode(img *image.YCbCr, key bool) ([]byte, error) {
	if key {
		e.key.ForceKeyFrame()
	}
	e.in.img = img
	b, release, err := e.rc.Read()
	release()
	return b, err
}

func (e *h264) Close() error { return e.rc.Close() }
