package e2e

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/camd/camd/device"
)

// countingListener counts the connections a fake board has open and has
// ever accepted.
type countingListener struct {
	net.Listener
	open, total atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.open.Add(1)
	l.total.Add(1)
	return &countedConn{Conn: c, l: l}, nil
}

type countedConn struct {
	net.Conn
	l    *countingListener
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}

// newCountedBoard is a fake ESP32 whose connections are counted.
func newCountedBoard(t *testing.T) (*fakeBoard, *countingListener) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: ln}
	b := &fakeBoard{t: t, addr: ln.Addr().String(), fps: 15, sim: device.NewSim(320, 240, 15, 70), streams: map[net.Conn]bool{}}
	b.serve(cl)
	t.Cleanup(b.kill)
	return b, cl
}

// On demand (issue 13): camd connects to an on_demand camera only while an
// output has a viewer, and is off the board linger after the last one
// left. A fake ESP32 counts the connections.
func TestOnDemandCameraSleeps(t *testing.T) {
	const linger = time.Second
	for _, mode := range []string{"stream", "capture"} {
		t.Run(mode, func(t *testing.T) {
			board, conns := newCountedBoard(t)
			c := startCamd(t, fmt.Sprintf(`
cameras:
  - name: esp
    on_demand: true
    linger: %s
    source: {type: esp32, url: %q, mode: %s, fps: 15}
outputs:
  - name: web
    plugin: mjpeg
    config: {listen: "127.0.0.1:0"}
`, linger, board.url(), mode))
			url := streamURL(c.waitOutputs(nil), "web", "esp")
			cameraState := func() string {
				s := c.status()
				if len(s.Cameras) != 1 {
					t.Fatalf("cameras in status: %+v", s.Cameras)
				}
				return s.Cameras[0].State
			}

			// Nobody watches: no connection at all, and camd says so.
			time.Sleep(3 * time.Second)
			if n := conns.total.Load(); n != 0 {
				t.Fatalf("camd opened %d connections to the board while nobody watched", n)
			}
			if st := cameraState(); st != "idle" {
				t.Errorf("state while nobody watches = %q, want idle", st)
			}
			// /metrics says so too, with no frame age growing (an
			// alert on it would fire for every sleeping camera).
			metrics := string(c.apiGet("/metrics"))
			for want, ok := range map[string]bool{
				`camd_camera_state{camera="esp",state="idle"} 1`:    true,
				`camd_camera_state{camera="esp",state="stopped"} 1`: false,
				`camd_camera_last_frame_age_seconds{camera="esp"}`:  false,
			} {
				if strings.Contains(metrics, want) != ok {
					t.Errorf("/metrics while nobody watches: has %s = %v, want %v", want, !ok, ok)
				}
			}

			// A viewer arrives: frames soon (the target is 1 s; a busy
			// machine gets more room).
			asked := time.Now()
			v := watch(t, url)
			v.waitFrames(t, 1, 10*time.Second)
			v.mu.Lock()
			first := v.times[0].Sub(asked)
			v.mu.Unlock()
			t.Logf("%s: first frame %v after the viewer arrived", mode, first.Round(time.Millisecond))
			if first > 5*time.Second {
				t.Errorf("first frame after %v, want about 1 s", first)
			}
			v.waitFrames(t, 10, 10*time.Second)
			if st := cameraState(); st != "live" {
				t.Errorf("state while watched = %q, want live", st)
			}

			// The viewer leaves: linger later, no connection.
			v.cancel()
			<-v.done
			left := time.Now()
			deadline := left.Add(linger + 10*time.Second)
			for conns.open.Load() != 0 {
				if time.Now().After(deadline) {
					t.Fatalf("%d connections still open %v after the last viewer left (linger %v)", conns.open.Load(), time.Since(left).Round(time.Millisecond), linger)
				}
				time.Sleep(20 * time.Millisecond)
			}
			t.Logf("%s: off the board %v after the last viewer left (linger %v)", mode, time.Since(left).Round(time.Millisecond), linger)
			if gone := time.Since(left); gone < linger {
				t.Errorf("disconnected after %v, before linger %v", gone, linger)
			}
			total := conns.total.Load()
			time.Sleep(2 * time.Second)
			if n := conns.total.Load(); n != total {
				t.Errorf("camd connected %d more times after it let the camera sleep", n-total)
			}
			if st := cameraState(); st != "idle" {
				t.Errorf("state after the viewer left = %q, want idle", st)
			}
		})
	}
}

// An output that always needs frames (a timelapse) keeps an on_demand
// camera awake; an output without a viewer gets no frames.
func TestOnDemandTimelapseKeepsAwake(t *testing.T) {
	board, conns := newCountedBoard(t)
	dir := t.TempDir()
	c := startCamd(t, fmt.Sprintf(`
cameras:
  - name: esp
    on_demand: true
    linger: 1s
    source: {type: esp32, url: %q, mode: stream, fps: 15}
outputs:
  - name: web
    plugin: mjpeg
    config: {listen: "127.0.0.1:0"}
  - name: stills
    plugin: snapshot
    config: {listen: "127.0.0.1:0", dir: %q, every: 1s}
`, board.url(), dir))
	c.waitOutputs(nil)
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := c.status()
		if len(s.Cameras) == 1 && s.Cameras[0].State == "live" && s.Cameras[0].Frames > 30 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the timelapse did not wake the camera: %+v", s.Cameras)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if conns.open.Load() == 0 {
		t.Error("no connection to the board while a timelapse runs")
	}
	// The mjpeg output has no viewer: camd sends it nothing.
	var out struct {
		Outputs []struct {
			Name    string `json:"name"`
			Cameras map[string]struct {
				Sent uint64 `json:"sent"`
			} `json:"cameras"`
		} `json:"outputs"`
	}
	c.apiJSON("/api/status", &out)
	for _, o := range out.Outputs {
		if o.Name == "web" && o.Cameras["esp"].Sent != 0 {
			t.Errorf("the mjpeg output without viewers was sent %d frames", o.Cameras["esp"].Sent)
		}
	}
}
