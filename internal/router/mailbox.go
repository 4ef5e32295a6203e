package router

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/camd/camd/sdk/wire"
)

// Mailbox holds, per camera, the newest frame not yet taken, and whether a
// frame of that camera is in flight (taken but not acknowledged). It is the
// daemon half of the credit protocol with a plugin: one frame per camera in
// flight, latest wins while it is.
type Mailbox struct {
	mu    sync.Mutex
	slots map[string]*slot
	order []string // cameras in round-robin order
	next  int
	ready chan struct{} // signalled when something may have become takeable
}

type slot struct {
	pending     *wire.Frame
	inFlight    time.Time // zero when nothing is in flight
	inFlightSeq uint64    // the Seq of the frame in flight: only its ack frees the camera
	sent        uint64
	dropped     uint64
}

// take marks f, of this slot's camera, in flight.
func (s *slot) take(f *wire.Frame) {
	s.inFlight, s.inFlightSeq = time.Now(), f.Seq
	s.sent++
}

// acks reports whether an ack of seq is for the frame in flight. Any
// other (a second ack, a stale one) is ignored: each would free the
// camera for one more frame than the plugin took, and a plugin acking
// too often would fill the frame socket and then wedge the camera.
func (s *slot) acks(seq uint64) bool {
	return !s.inFlight.IsZero() && seq == s.inFlightSeq
}

// AnySeq in a gRPC ack (ack_seq unset) acks whatever frame is in flight,
// for plugins written before ack_seq was checked. Extra acks there cost
// only frames on the plugin's own stream, never a camera's goroutine.
const AnySeq = 0

// CameraCounters are a mailbox's counters for one camera.
type CameraCounters struct {
	Sent    uint64 `json:"sent"`
	Dropped uint64 `json:"dropped"`
}

// NewMailbox returns an empty mailbox.
func NewMailbox() *Mailbox {
	return &Mailbox{slots: map[string]*slot{}, ready: make(chan struct{}, 1)}
}

func (m *Mailbox) slot(camera string) *slot {
	s, ok := m.slots[camera]
	if !ok {
		s = &slot{}
		m.slots[camera] = s
		m.order = append(m.order, camera)
	}
	return s
}

func (m *Mailbox) signal() {
	select {
	case m.ready <- struct{}{}:
	default:
	}
}

// Offer implements Sink: f replaces any frame of its camera still waiting,
// which is counted as dropped. The mailbox keeps f.
func (m *Mailbox) Offer(f wire.Frame) bool {
	m.mu.Lock()
	s := m.slot(f.Camera)
	if s.pending != nil {
		s.dropped++
	}
	s.pending = &f
	// While a frame is in flight its ack signals; waking the sender now
	// would find nothing takeable (a thread wake per frame for nothing).
	takeable := s.inFlight.IsZero()
	m.mu.Unlock()
	if takeable {
		m.signal()
	}
	return true
}

// OfferTake is Offer for a sender that can send at once, in the caller's
// goroutine: if f's camera has nothing in flight, f is marked in flight
// and returned instead of waiting for Next.
func (m *Mailbox) OfferTake(f wire.Frame) (wire.Frame, bool) {
	m.mu.Lock()
	s := m.slot(f.Camera)
	if !s.inFlight.IsZero() {
		if s.pending != nil {
			s.dropped++
		}
		s.pending = &f
		m.mu.Unlock()
		return wire.Frame{}, false
	}
	if s.pending != nil { // left by a sender that took nothing since
		s.dropped++
		s.pending = nil
	}
	s.take(&f)
	m.mu.Unlock()
	return f, true
}

// AckTake is Ack for the same sender: it returns camera's waiting frame,
// marked in flight, if there is one.
func (m *Mailbox) AckTake(camera string, seq uint64) (wire.Frame, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.slots[camera]
	if !ok || !s.acks(seq) {
		return wire.Frame{}, false
	}
	s.inFlight = time.Time{}
	if s.pending == nil {
		return wire.Frame{}, false
	}
	f := *s.pending
	s.pending = nil
	s.take(&f)
	return f, true
}

// Forget drops the waiting frames of the cameras keep rejects: frames a
// plugin stopped wanting would be stale when it wants them again.
func (m *Mailbox) Forget(keep func(camera string) bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for cam, s := range m.slots {
		if s.pending != nil && !keep(cam) {
			s.pending = nil
		}
	}
}

// Waiting reports whether a frame waits for its camera's ack.
func (m *Mailbox) Waiting() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.slots {
		if s.pending != nil {
			return true
		}
	}
	return false
}

// TryNext is Next without waiting: false when nothing is takeable.
func (m *Mailbox) TryNext() (wire.Frame, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.order {
		cam := m.order[(m.next+i)%len(m.order)]
		s := m.slots[cam]
		if s.pending != nil && s.inFlight.IsZero() {
			f := *s.pending
			s.pending = nil
			s.take(&f)
			m.next = (m.next + i + 1) % len(m.order)
			return f, true
		}
	}
	return wire.Frame{}, false
}

// Next waits for a frame of a camera that has nothing in flight, marks it
// in flight and returns it. Cameras take turns, so a busy camera cannot
// starve another.
func (m *Mailbox) Next(ctx context.Context) (wire.Frame, error) {
	for {
		if f, ok := m.TryNext(); ok {
			return f, nil
		}
		select {
		case <-ctx.Done():
			return wire.Frame{}, ctx.Err()
		case <-m.ready:
		}
	}
}

// Ack marks camera's in-flight frame, the one whose Seq is seq (or any,
// with AnySeq), as done.
func (m *Mailbox) Ack(camera string, seq uint64) {
	m.mu.Lock()
	takeable := false
	if s, ok := m.slots[camera]; ok && (s.acks(seq) || seq == AnySeq) {
		s.inFlight = time.Time{}
		takeable = s.pending != nil
	}
	m.mu.Unlock()
	if takeable {
		m.signal()
	}
}

// Remove forgets camera: its waiting frame and counters, for an output
// that no longer receives it.
func (m *Mailbox) Remove(camera string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.slots[camera]; !ok {
		return
	}
	delete(m.slots, camera)
	m.order = slices.DeleteFunc(m.order, func(c string) bool { return c == camera })
	m.next = 0
}

// Reset forgets what is in flight, for a new connection to a restarted
// plugin. Waiting frames are kept: they are the newest there are.
func (m *Mailbox) Reset() {
	m.mu.Lock()
	for _, s := range m.slots {
		s.inFlight = time.Time{}
	}
	m.mu.Unlock()
	m.signal()
}

// OldestInFlight returns how long the oldest unacknowledged frame has been
// in flight, or 0.
func (m *Mailbox) OldestInFlight(now time.Time) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	var d time.Duration
	for _, s := range m.slots {
		if !s.inFlight.IsZero() {
			d = max(d, now.Sub(s.inFlight))
		}
	}
	return d
}

// Counters returns per-camera counters.
func (m *Mailbox) Counters() map[string]CameraCounters {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]CameraCounters, len(m.slots))
	for cam, s := range m.slots {
		out[cam] = CameraCounters{Sent: s.sent, Dropped: s.dropped}
	}
	return out
}
