package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/camd/camd/internal/rawio"
	"github.com/camd/camd/sdk/wire"
)

// shmLink is camd's end of a plugin's shared-memory frame transport (see
// wire.EnvFrameFDs): a memfd camd writes frames into and a socket for the
// messages that say where they are.
type shmLink struct {
	mem   *os.File
	sock  *net.UnixConn
	rio   *rawio.Conn // sock's frames and acks, without the scheduler's wake-ups
	child *os.File    // the plugin's end of the socket, until it has started

	// Frames are sent from whichever goroutine offers them or frees
	// their camera: sendMu keeps one at a time on the mapping.
	sendMu  sync.Mutex
	mapped  []byte
	regions map[string]region // per camera
	end     int               // the memfd's size: regions are never freed
	msg     []byte
	msgv    net.Buffers // msg, for TryWritev
	closed  bool
}

// region is a camera's place in the memfd.
type region struct{ off, cap int }

// regionAlign keeps regions page-aligned and leaves room to grow.
const regionAlign = 64 << 10

func newShmLink() (*shmLink, error) {
	fd, err := unix.MemfdCreate("camd-frames", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd: %w", err)
	}
	mem := os.NewFile(uintptr(fd), "camd-frames")
	// The plugin holds this file too: were it to shrink it, camd's next
	// copy into the mapping would die of SIGBUS, and every camera with
	// it. Sealed, it can only grow; and nobody can add seals (one against
	// growing would stop camd's).
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_SEAL); err != nil {
		mem.Close()
		return nil, fmt.Errorf("memfd seals: %w", err)
	}
	pair, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_SEQPACKET|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		mem.Close()
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	ours := os.NewFile(uintptr(pair[0]), "camd-frames-socket")
	defer ours.Close() // FileConn holds its own descriptor
	c, err := net.FileConn(ours)
	if err != nil {
		mem.Close()
		syscall.Close(pair[1])
		return nil, fmt.Errorf("frame socket: %w", err)
	}
	uc := c.(*net.UnixConn)
	rio, err := rawio.Of(uc)
	if err != nil {
		c.Close()
		mem.Close()
		syscall.Close(pair[1])
		return nil, fmt.Errorf("frame socket: %w", err)
	}
	return &shmLink{mem: mem, sock: uc, rio: rio, child: os.NewFile(uintptr(pair[1]), "camd-frames-plugin"), regions: map[string]region{}}, nil
}

// files are the plugin's ExtraFiles, and env what tells it so.
func (l *shmLink) files() []*os.File { return []*os.File{l.mem, l.child} }

func (l *shmLink) env() string { return wire.EnvFrameFDs + "=3,4" }

// started closes camd's copy of the plugin's end, so camd sees EOF when
// the plugin dies.
func (l *shmLink) started() {
	if l.child != nil {
		l.child.Close()
		l.child = nil
	}
}

// accepted reports whether the plugin said Hello. It sent it before its
// handshake, which camd has read, so it is waiting if it was sent at all;
// the deadline only bounds the system call.
func (l *shmLink) accepted() bool {
	buf := make([]byte, wire.MaxShmMessage)
	_ = l.sock.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	n, err := l.sock.Read(buf)
	_ = l.sock.SetReadDeadline(time.Time{})
	return err == nil && wire.IsShmHello(buf[:n])
}

// send writes f's bytes into its camera's region and tells the plugin.
func (l *shmLink) send(f wire.Frame) error {
	l.sendMu.Lock()
	defer l.sendMu.Unlock()
	if l.closed {
		return net.ErrClosed
	}
	r, ok := l.regions[f.Camera]
	if !ok || r.cap < len(f.JPEG) {
		// A new camera, or a bigger frame: a new region at the end. The
		// old one is left; sizes change rarely.
		r = region{off: l.end, cap: roundUp(max(len(f.JPEG)*5/4, regionAlign), regionAlign)}
		if err := l.grow(r.off + r.cap); err != nil {
			return err
		}
		l.regions[f.Camera] = r
	}
	copy(l.mapped[r.off:], f.JPEG)
	l.msg = wire.AppendShmFrame(l.msg[:0], wire.ShmFrame{Frame: f, Offset: uint64(r.off), Length: uint32(len(f.JPEG))})
	// Never waits: a plugin that keeps to the protocol has at most one
	// message per camera unread, far less than the socket holds. A full
	// socket is a plugin that does not read, and waiting on it would
	// stall the camera offering the frame.
	l.msgv = append(l.msgv[:0], l.msg)
	switch _, done, err := l.rio.TryWritev(&l.msgv); {
	case err != nil:
		return fmt.Errorf("frame socket: %w", err)
	case !done:
		return errors.New("frame socket: full: the plugin reads no frames")
	}
	return nil
}

func (l *shmLink) grow(size int) error {
	// The file only grows (sealed against shrinking); the plugin may
	// have grown it already, which does no harm.
	fi, err := l.mem.Stat()
	if err != nil {
		return fmt.Errorf("memfd: %w", err)
	}
	if int64(size) > fi.Size() {
		if err := l.mem.Truncate(int64(size)); err != nil {
			return fmt.Errorf("memfd: %w", err)
		}
	}
	if l.mapped != nil {
		if err := syscall.Munmap(l.mapped); err != nil {
			return fmt.Errorf("munmap: %w", err)
		}
		l.mapped = nil
	}
	m, err := syscall.Mmap(int(l.mem.Fd()), 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		l.closed = true // no mapping: every later send must fail, not copy into nil
		return fmt.Errorf("mmap: %w", err)
	}
	l.mapped, l.end = m, size
	return nil
}

// Acks are read lazily. A plugin that keeps up acknowledges a frame long
// before the next one comes, and a goroutine blocked on the socket would
// wake camd once per frame just to note it. So the acks wait in the socket
// until the next frame is offered (drain), and only while a frame waits for
// its camera's ack does a goroutine block on the socket (waitAcks).

// drain reads the acks that have arrived, without waiting.
func (l *shmLink) drain(ack func(camera string, seq uint64)) error {
	var buf [wire.MaxShmMessage]byte
	for {
		n, ok, err := l.rio.TryRead(buf[:])
		switch {
		case errors.Is(err, io.EOF):
			return errors.New("frame socket: closed by the plugin")
		case err != nil:
			return fmt.Errorf("frame socket: %w", err)
		case !ok:
			return nil // nothing more
		}
		camera, seq, err := wire.ParseShmAck(buf[:n])
		if err != nil {
			return fmt.Errorf("frame socket: %w", err)
		}
		ack(camera, seq)
	}
}

// waitAcks reads acks as they come while waiting() says a frame waits for
// one, and otherwise sleeps until wake fires; it returns the socket's
// error, or nil when ctx ends.
func (l *shmLink) waitAcks(ctx context.Context, wake <-chan struct{}, waiting func() bool, ack func(camera string, seq uint64)) error {
	buf := make([]byte, wire.MaxShmMessage)
	for {
		if !waiting() {
			select {
			case <-ctx.Done():
				return nil
			case <-wake:
				continue
			}
		}
		n, err := l.rio.Read(buf)
		if err != nil {
			switch {
			case ctx.Err() != nil:
				return nil
			case errors.Is(err, io.EOF):
				return errors.New("frame socket: closed by the plugin")
			}
			return fmt.Errorf("frame socket: %w", err)
		}
		camera, seq, err := wire.ParseShmAck(buf[:n])
		if err != nil {
			return fmt.Errorf("frame socket: %w", err)
		}
		ack(camera, seq)
		// Others that came meanwhile, without blocking again.
		if err := l.drain(ack); err != nil {
			return err
		}
	}
}

// close releases everything; a send after it fails.
func (l *shmLink) close() {
	l.started()
	l.sock.Close()
	l.sendMu.Lock()
	defer l.sendMu.Unlock()
	l.closed = true
	if l.mapped != nil {
		_ = syscall.Munmap(l.mapped)
		l.mapped = nil
	}
	l.mem.Close()
}

func roundUp(n, to int) int { return (n + to - 1) / to * to }
