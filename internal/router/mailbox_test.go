package router

import (
	"context"
	"testing"
	"time"

	"github.com/camd/camd/sdk/wire"
)

func frame(cam string, seq uint64) wire.Frame { return wire.Frame{Camera: cam, Seq: seq} }

func next(t *testing.T, m *Mailbox) (wire.Frame, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	f, err := m.Next(ctx)
	return f, err == nil
}

func TestMailboxLatestWinsWhileInFlight(t *testing.T) {
	m := NewMailbox()
	m.Offer(frame("a", 1))
	if f, ok := next(t, m); !ok || f.Seq != 1 {
		t.Fatalf("first = %v %v", f.Seq, ok)
	}
	// 1 is in flight: 2, 3, 4 arrive; only 4 is kept.
	for seq := uint64(2); seq <= 4; seq++ {
		m.Offer(frame("a", seq))
	}
	if _, ok := next(t, m); ok {
		t.Fatal("sent a second frame while one was in flight")
	}
	m.Ack("a", 1)
	if f, ok := next(t, m); !ok || f.Seq != 4 {
		t.Fatalf("after ack got %v %v, want 4", f.Seq, ok)
	}
	if c := m.Counters()["a"]; c.Sent != 2 || c.Dropped != 2 {
		t.Fatalf("counters = %+v, want sent 2 dropped 2", c)
	}
}

// TestMailboxAcksOnlyTheFrameInFlight: an ack frees its camera only when
// it names the frame in flight; a second ack of it, or a stale one, is
// ignored, so a plugin acking too often cannot have more frames sent than
// it takes.
func TestMailboxAcksOnlyTheFrameInFlight(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ack   func(m *Mailbox) (freed bool) // with frame a/1 in flight and a/2 waiting
		freed bool
	}{
		{"its ack", func(m *Mailbox) bool { m.Ack("a", 1); _, ok := m.TryNext(); return ok }, true},
		{"another seq", func(m *Mailbox) bool { m.Ack("a", 2); _, ok := m.TryNext(); return ok }, false},
		{"another camera", func(m *Mailbox) bool { m.Ack("b", 1); _, ok := m.TryNext(); return ok }, false},
		{"no seq (a gRPC plugin written before ack_seq counted)", func(m *Mailbox) bool { m.Ack("a", AnySeq); _, ok := m.TryNext(); return ok }, true},
		{"AckTake, no seq (shared memory: the SDK always sends it)", func(m *Mailbox) bool { _, ok := m.AckTake("a", AnySeq); return ok }, false},
		{"AckTake, its ack", func(m *Mailbox) bool { _, ok := m.AckTake("a", 1); return ok }, true},
		{"AckTake, another seq", func(m *Mailbox) bool { _, ok := m.AckTake("a", 7); return ok }, false},
		{"AckTake, twice", func(m *Mailbox) bool {
			m.AckTake("a", 1)             // frees a/1 and takes a/2
			m.Offer(frame("a", 3))        // waits for a/2's ack
			_, again := m.AckTake("a", 1) // a/1 acked again: not a/2's
			_, own := m.AckTake("a", 2)   // a/2's own ack sends a/3
			return !again && own
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMailbox()
			if _, ok := m.OfferTake(frame("a", 1)); !ok {
				t.Fatal("the first frame was not taken")
			}
			m.Offer(frame("a", 2))
			if got := tc.ack(m); got != tc.freed {
				t.Errorf("freed = %v, want %v", got, tc.freed)
			}
		})
	}
}

func TestMailboxCamerasIndependent(t *testing.T) {
	m := NewMailbox()
	m.Offer(frame("slow", 1))
	if f, _ := next(t, m); f.Camera != "slow" {
		t.Fatal(f)
	}
	// "slow" never acks; "fast" must still flow.
	for seq := uint64(1); seq <= 3; seq++ {
		m.Offer(frame("fast", seq))
		f, ok := next(t, m)
		if !ok || f.Camera != "fast" || f.Seq != seq {
			t.Fatalf("fast frame %d: got %v %v", seq, f, ok)
		}
		m.Ack("fast", seq)
	}
	if d := m.OldestInFlight(time.Now().Add(time.Minute)); d < time.Minute {
		t.Fatalf("oldest in flight = %v", d)
	}
}

func TestMailboxRoundRobin(t *testing.T) {
	m := NewMailbox()
	counts := map[string]int{}
	for i := 0; i < 30; i++ {
		m.Offer(frame("a", uint64(i)))
		m.Offer(frame("b", uint64(i)))
		f, _ := next(t, m)
		counts[f.Camera]++
		m.Ack(f.Camera, f.Seq)
	}
	if counts["a"] < 10 || counts["b"] < 10 {
		t.Fatalf("unfair: %v", counts)
	}
}

func TestRouterPublish(t *testing.T) {
	r := New()
	a, b := NewMailbox(), NewMailbox()
	r.Subscribe("cam1", a)
	r.Subscribe("cam1", b)
	r.Subscribe("cam2", b)
	r.Publish(frame("cam1", 1))
	r.Publish(frame("cam2", 1))
	r.Unsubscribe("cam1", b)
	r.Publish(frame("cam1", 2))
	if got := a.Counters()["cam1"]; got.Dropped != 1 {
		t.Fatalf("a: %+v", got)
	}
	if _, ok := b.Counters()["cam2"]; !ok {
		t.Fatal("b missed cam2")
	}
	if got := b.Counters()["cam1"]; got.Dropped != 0 {
		t.Fatalf("b got cam1 after unsubscribe: %+v", got)
	}
}

// decline is a sink that never keeps a frame (like an output that copied
// it out at once, or wants none).
type decline struct{ offers int }

func (d *decline) Offer(wire.Frame) bool { d.offers++; return false }

func TestPublishReportsKept(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sinks func() []Sink
		kept  bool
	}{
		{"no sink", func() []Sink { return nil }, false},
		{"a sink that does not keep it", func() []Sink { return []Sink{&decline{}} }, false},
		{"a mailbox keeps it", func() []Sink { return []Sink{NewMailbox()} }, true},
		{"kept by one of several", func() []Sink { return []Sink{&decline{}, NewMailbox(), &decline{}} }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := New()
			sinks := tc.sinks()
			for _, s := range sinks {
				r.Subscribe("cam", s)
			}
			if got := r.Publish(frame("cam", 1)); got != tc.kept {
				t.Errorf("Publish reported kept %v, want %v", got, tc.kept)
			}
			for i, s := range sinks {
				if d, ok := s.(*decline); ok && d.offers != 1 {
					t.Errorf("sink %d was offered the frame %d times, want 1", i, d.offers)
				}
			}
		})
	}
}
