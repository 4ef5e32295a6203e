package main

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"time"

	"github.com/camd/camd/internal/rawio"
)

// A bare read of the source is the least a Go process can spend on a
// camera: a loop reading the stream into one buffer with the system calls
// camd uses, no parsing, nothing sent on. The benchmark measures it beside camd's idle cost, in the same
// runs, so the fixed cost reads against what the machine charges for the
// wake-ups and copies themselves (on a shared VM that varies several-fold
// from minute to minute).

// bareRead reads url's body forever: the -bare-read process.
func bareRead(ctx context.Context, rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return err
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return err
	}
	defer c.Close()
	context.AfterFunc(ctx, func() { c.Close() })
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", u.RequestURI(), u.Host); err != nil {
		return err
	}
	// Read as camd does, with raw system calls: the net package's own
	// Read wakes the runtime's monitor thread before every frame, which
	// would make this "floor" cost more than camd.
	rc, err := rawio.Of(c.(*net.TCPConn))
	if err != nil {
		return err
	}
	buf := make([]byte, 64<<10)
	for {
		if _, err := rc.Read(buf); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// startBare runs this program as a bare reader of src.
func startBare(ctx context.Context, src string) (*relay, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, self, "-bare-read", src)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start bare reader: %w", err)
	}
	return &relay{name: "bare read", cmd: cmd, procs: procTree{cmd.Process.Pid}}, nil
}

// selfCPU returns the CPU time this process has used (its threads only):
// the viewers' and the source's.
func selfCPU() time.Duration {
	return threadsCPU(os.Getpid())
}
