package wire

import (
	"reflect"
	"testing"
	"time"
)

func TestShmMessages(t *testing.T) {
	f := ShmFrame{Frame: Frame{Camera: "front door", Seq: 42, Captured: time.Unix(0, 1234567890), Width: 640, Height: 480, Placeholder: true}, Offset: 65536, Length: 40000}
	got, err := ParseShmFrame(AppendShmFrame(nil, f))
	if err != nil || !got.Captured.Equal(f.Captured) {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	got.Captured = f.Captured
	if !reflect.DeepEqual(got, f) {
		t.Errorf("round trip: got %+v, want %+v", got, f)
	}
	cam, seq, err := ParseShmAck(AppendShmAck(nil, "front door", 42))
	if err != nil || cam != "front door" || seq != 42 {
		t.Errorf("ack round trip: %q %d %v", cam, seq, err)
	}
	if !IsShmHello(ShmHello()) || IsShmHello([]byte{shmHello, shmVersion + 1}) {
		t.Error("hello: a version other than ours must not count")
	}
	for _, bad := range [][]byte{nil, {shmFrame}, AppendShmFrame(nil, f)[:shmFrameHeader+3], {shmAck, 1}} {
		if _, err := ParseShmFrame(bad); err == nil {
			t.Errorf("ParseShmFrame(%x) accepted", bad)
		}
	}
}

// FuzzShmMessages: no input makes the parsers panic or accept a frame that
// reaches past what the length fields say.
func FuzzShmMessages(f *testing.F) {
	f.Add(AppendShmFrame(nil, ShmFrame{Frame: Frame{Camera: "cam", Seq: 1}, Offset: 0, Length: 10}))
	f.Add(AppendShmAck(nil, "cam", 7))
	f.Add(ShmHello())
	f.Fuzz(func(t *testing.T, b []byte) {
		if m, err := ParseShmFrame(b); err == nil {
			if m.Length > MaxFrameBytes || len(m.Camera) != len(b)-shmFrameHeader {
				t.Fatalf("accepted %x as %+v", b, m)
			}
		}
		_, _, _ = ParseShmAck(b)
	})
}
