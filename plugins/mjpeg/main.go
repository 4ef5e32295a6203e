// Command camd-plugin-mjpeg is camd's MJPEG-over-HTTP output: every camera
// as multipart/x-mixed-replace at /cameras/<camera>/stream.mjpg, for
// browsers, ffmpeg, VLC, OpenCV, Home Assistant and motionEye.
package main

import "github.com/camd/camd/sdk"

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	sdk.Serve(sdk.Info{Name: "mjpeg", Version: version, SampleConfig: sampleConfig, OnDemand: true}, &MJPEG{})
}
