// Command camd-plugin-webrtc is camd's WebRTC output: each camera's JPEG
// frames are decoded, encoded once to H.264 or VP8, and sent to any number
// of viewers over WebRTC with WHEP signalling (and, optionally, published
// to an SFU over WHIP).
package main

import (
	"os"
	"runtime/debug"

	"github.com/camd/camd/sdk"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// gcPercent is the plugin's GOGC unless the environment sets one. Its
// heap is mostly viewers' long-lived connection state (pion's buffers and
// ciphers, ~120 KB a viewer) and it allocates little per packet, so Go's
// default of 100 (the heap may grow to twice what is live) is memory for
// nothing: 50 keeps a viewer at ~270 KB of RSS instead of ~350 KB, for
// a collection every few seconds (make bench -webrtc).
const gcPercent = 50

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	sdk.Serve(sdk.Info{Name: "webrtc", Version: version, SampleConfig: sampleConfig, OnDemand: true}, &WebRTC{})
}
