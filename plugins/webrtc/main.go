// Command camd-plugin-webrtc is camd's WebRTC output: each camera's JPEG
// frames are decoded, encoded once to H.264 or VP8, and sent to any number
// of viewers over WebRTC with WHEP signalling (and, optionally, published
// to an SFU over WHIP).
package main

import "github.com/camd/camd/sdk"

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	sdk.Serve(sdk.Info{Name: "webrtc", Version: version, SampleConfig: sampleConfig, OnDemand: true}, &WebRTC{})
}
