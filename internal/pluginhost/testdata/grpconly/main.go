// Command grpconly is a test plugin that takes its frames over the gRPC
// stream, as a plugin in another language does: it turns the
// shared-memory link down. It does nothing with them.
package main

import (
	"context"
	"os"

	"github.com/camd/camd/sdk"
	"github.com/camd/camd/sdk/wire"
)

type nop struct{}

func (nop) Configure(sdk.Config) error              { return nil }
func (nop) Start(context.Context) ([]string, error) { return nil, nil }
func (nop) HandleFrame(f sdk.Frame)                 {}
func (nop) Stop(context.Context) error              { return nil }

func main() {
	os.Unsetenv(wire.EnvFrameFDs)
	sdk.Serve(sdk.Info{Name: "grpconly", Version: "test"}, nop{})
}
