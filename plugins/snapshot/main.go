// Command camd-plugin-snapshot is camd's stills output: the newest frame of
// each camera as a plain JPEG URL, answered from memory, with explicit
// freshness semantics, and an optional timelapse on disk.
package main

import "github.com/camd/camd/sdk"

var version = "dev"

func main() {
	sdk.Serve(sdk.Info{Name: "snapshot", Version: version, SampleConfig: sampleConfig, OnDemand: true}, &Snapshot{})
}
