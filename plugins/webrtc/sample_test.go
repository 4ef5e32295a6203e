package main

import (
	"testing"

	"github.com/camd/camd/sdk/sdktest"
)

// The embedded sample is the plugin's defaults, valid, and shown verbatim
// in its README.
func TestSampleConfig(t *testing.T) {
	sdktest.CheckSample(t, &WebRTC{}, []string{"front"}, sampleConfig, "README.md")
}
