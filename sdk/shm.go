package sdk

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/camd/camd/internal/rawio"
	"github.com/camd/camd/sdk/wire"
)

// shmFrames is the plugin's end of the shared-memory frame transport (see
// wire.EnvFrameFDs).
type shmFrames struct {
	mem    *os.File
	sock   *net.UnixConn
	rio    *rawio.Conn // sock, without the scheduler's wake-ups
	mapped []byte      // read-only; only run uses it
	// buffers are the frames' copies the output released (Frame.Release).
	buffers wire.Buffers
}

// openShmFrames takes the descriptors camd passed, or returns nil when it
// passed none.
func openShmFrames() (*shmFrames, error) {
	v := os.Getenv(wire.EnvFrameFDs)
	if v == "" {
		return nil, nil
	}
	a, b, ok := strings.Cut(v, ",")
	memFD, err1 := strconv.Atoi(a)
	sockFD, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil {
		return nil, fmt.Errorf("%s=%q: want two descriptors", wire.EnvFrameFDs, v)
	}
	mem := os.NewFile(uintptr(memFD), "camd-frames")
	sf := os.NewFile(uintptr(sockFD), "camd-frames-socket")
	defer sf.Close() // FileConn holds its own descriptor
	c, err := net.FileConn(sf)
	if err != nil {
		mem.Close()
		return nil, fmt.Errorf("frame socket: %w", err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		mem.Close()
		return nil, errors.New("frame socket: not a unix socket")
	}
	rio, err := rawio.Of(uc)
	if err != nil {
		c.Close()
		mem.Close()
		return nil, fmt.Errorf("frame socket: %w", err)
	}
	s := &shmFrames{mem: mem, sock: uc, rio: rio}
	if _, err := uc.Write(wire.ShmHello()); err != nil {
		s.close()
		return nil, fmt.Errorf("frame socket: %w", err)
	}
	return s, nil
}

// run hands each frame camd sends to out, one goroutine per camera as the
// gRPC stream does, until camd closes the socket.
func (s *shmFrames) run(out Output, log *slog.Logger) error {
	w := newFrameWorkers(out, func(camera string, seq uint64) {
		if _, err := s.rio.Write(wire.AppendShmAck(nil, camera, seq)); err != nil {
			log.Debug("ack failed", "camera", camera, "err", err)
		}
	})
	defer w.close()
	buf := make([]byte, wire.MaxShmMessage)
	for {
		n, err := s.rio.Read(buf)
		if err != nil {
			// camd closing its end with acks it has not read (it reads
			// them lazily) is a reset, not a failure.
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNRESET) {
				return nil
			}
			return fmt.Errorf("frame socket: %w", err)
		}
		m, err := wire.ParseShmFrame(buf[:n])
		if err != nil {
			return fmt.Errorf("frame socket: %w", err)
		}
		end := m.Offset + uint64(m.Length)
		if end > uint64(len(s.mapped)) {
			if err := s.remap(end); err != nil {
				return err
			}
		}
		// A copy the output may keep: camd writes this region again
		// once the frame is acknowledged. An output that releases its
		// frames has them copied into the same few buffers.
		f := m.Frame
		s.buffers.Fill(&f, s.mapped[m.Offset:end])
		w.dispatch(f)
	}
}

// remap maps the whole memfd again after camd grew it.
func (s *shmFrames) remap(need uint64) error {
	st, err := s.mem.Stat()
	if err != nil {
		return fmt.Errorf("frame memory: %w", err)
	}
	if uint64(st.Size()) < need {
		return fmt.Errorf("frame memory: frame ends at %d, memory holds %d", need, st.Size())
	}
	if s.mapped != nil {
		_ = syscall.Munmap(s.mapped)
		s.mapped = nil
	}
	m, err := syscall.Mmap(int(s.mem.Fd()), 0, int(st.Size()), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("frame memory: %w", err)
	}
	s.mapped = m
	return nil
}

// stop ends run: it returns once the socket is closed.
func (s *shmFrames) stop() { s.sock.Close() }

// close releases the memory; run must have returned.
func (s *shmFrames) close() {
	s.sock.Close()
	if s.mapped != nil {
		_ = syscall.Munmap(s.mapped)
		s.mapped = nil
	}
	s.mem.Close()
}

// frameWorkers hands frames to an Output with one goroutine per camera, so
// a slow camera's frames never hold up another's (the Output contract).
// While only one camera has sent frames, the caller's goroutine is that
// camera's: a hand-over per frame costs a thread wake-up, which on a small
// machine is most of what a frame costs a plugin.
type frameWorkers struct {
	out   Output
	ack   func(camera string, seq uint64)
	wg    sync.WaitGroup
	only  string // the one camera seen, while there is one
	chans map[string]chan wire.Frame
}

func newFrameWorkers(out Output, ack func(camera string, seq uint64)) *frameWorkers {
	return &frameWorkers{out: out, ack: ack, chans: map[string]chan wire.Frame{}}
}

// dispatch hands f to its camera's worker. camd sends a camera's next
// frame only after the ack, so the one-frame queue never blocks for long.
func (w *frameWorkers) dispatch(f wire.Frame) {
	if len(w.chans) == 0 && (w.only == "" || w.only == f.Camera) {
		w.only = f.Camera
		w.out.HandleFrame(f)
		w.ack(f.Camera, f.Seq)
		return
	}
	ch, ok := w.chans[f.Camera]
	if !ok {
		ch = make(chan wire.Frame, 1)
		w.chans[f.Camera] = ch
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for f := range ch {
				w.out.HandleFrame(f)
				w.ack(f.Camera, f.Seq)
			}
		}()
	}
	ch <- f
}

// close stops the workers and waits for them.
func (w *frameWorkers) close() {
	for _, ch := range w.chans {
		close(ch)
	}
	w.wg.Wait()
}
