package sdktest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// childEnv names the test a child process started by StartChild runs.
const childEnv = "CAMD_SDKTEST_CHILD"

// readyPrefix marks the line a child hands its parent on stdout.
const readyPrefix = "sdktest-child-ready: "

// Child is a test of this test binary running in a process of its own, for
// what must be measured apart from the test's clients: a plugin's memory
// or file descriptors. The parent starts it with StartChild; the child
// test checks InChild, starts the plugin, and calls Ready:
//
//	func TestFloodChild(t *testing.T) {
//		if !sdktest.InChild(t) {
//			t.Skip("the server of TestFlood")
//		}
//		h := sdktest.New(t, &MJPEG{})
//		urls, _ := h.Start("web", []string{"cam"}, "listen: 127.0.0.1:0")
//		sdktest.Ready(t, urls[0]) // until the parent test ends
//	}
//
//	func TestFlood(t *testing.T) {
//		c := sdktest.StartChild(t, "TestFloodChild")
//		base := c.Ready // urls[0]
//		before := c.RSS()
//		...
//	}
type Child struct {
	Pid   int
	Ready string // what the child passed to Ready

	t      testing.TB
	stdin  io.WriteCloser
	stderr lockedBuffer
}

// StartChild runs test in a child process (this binary with -test.run) and
// returns once it called Ready. env is added to the child's environment.
// The child ends with the parent test.
func StartChild(t testing.TB, test string, env ...string) *Child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1")
	cmd.Env = append(append(os.Environ(), childEnv+"="+test), env...)
	c := &Child{t: t}
	cmd.Stderr = &c.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c.Pid = cmd.Process.Pid
	// exited is closed when the child has exited; waitErr is its error.
	// Closed, not sent on, so the cleanup and the wait below can both see it.
	exited := make(chan struct{})
	var waitErr error
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if line, ok := strings.CutPrefix(sc.Text(), readyPrefix); ok {
				select {
				case ready <- line:
				default:
				}
			}
		}
		waitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		c.stdin.Close() // Ready returns in the child
		select {
		case <-exited:
			if waitErr != nil {
				t.Errorf("child %s: %v\n%s", test, waitErr, c.stderr.String())
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-exited
			t.Errorf("child %s did not exit; killed\n%s", test, c.stderr.String())
		}
	})
	select {
	case c.Ready = <-ready:
		return c
	case <-exited:
		t.Fatalf("child %s exited before Ready: %v\n%s", test, waitErr, c.stderr.String())
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("child %s not ready after 60s\n%s", test, c.stderr.String())
	}
	return nil
}

// InChild reports whether this process is a child that StartChild started
// to run t.
func InChild(t *testing.T) bool { return os.Getenv(childEnv) == t.Name() }

// Ready, called in a child, hands line to the parent (Child.Ready) and
// returns when the parent test ends.
func Ready(t *testing.T, line string) {
	t.Helper()
	if !InChild(t) {
		t.Fatal("sdktest.Ready outside a child started by StartChild")
	}
	if strings.Contains(line, "\n") {
		t.Fatalf("sdktest.Ready: line %q has a newline", line)
	}
	fmt.Println(readyPrefix + line)
	_, _ = io.Copy(io.Discard, os.Stdin) // EOF when the parent closes it
}

// RSS returns the child's resident memory in bytes.
func (c *Child) RSS() int64 {
	c.t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/statm", c.Pid))
	if err != nil {
		c.t.Fatalf("child's memory: %v", err)
	}
	fields := strings.Fields(string(b))
	if len(fields) < 2 {
		c.t.Fatalf("child's memory: statm %q", b)
	}
	pages, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil {
		c.t.Fatalf("child's memory: statm %q", b)
	}
	return pages * int64(os.Getpagesize())
}

// Stderr returns what the child wrote to stderr so far (its logs).
func (c *Child) Stderr() string { return c.stderr.String() }

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
