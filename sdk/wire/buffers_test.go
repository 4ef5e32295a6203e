package wire

import (
	"bytes"
	"testing"
)

func TestBuffers(t *testing.T) {
	var b Buffers
	jpeg := func(n int, c byte) []byte { return bytes.Repeat([]byte{c}, n) }

	var f1 Frame
	b.Fill(&f1, jpeg(1000, 1))
	if !bytes.Equal(f1.JPEG, jpeg(1000, 1)) {
		t.Fatal("Fill did not copy the frame")
	}
	first := &f1.JPEG[:1][0]
	f1.Release()

	var f2 Frame
	b.Fill(&f2, jpeg(1100, 2)) // within the eighth of room
	if &f2.JPEG[:1][0] != first {
		t.Error("a frame that fits was not read into the released buffer")
	}
	if !bytes.Equal(f2.JPEG, jpeg(1100, 2)) {
		t.Fatal("the reused buffer does not hold the new frame")
	}

	var f3 Frame // f2 not released: f3 must not share its bytes
	b.Fill(&f3, jpeg(1000, 3))
	if &f3.JPEG[:1][0] == first || !bytes.Equal(f2.JPEG, jpeg(1100, 2)) {
		t.Error("a frame was read into a buffer still held")
	}
	f2.Release()
	var f4 Frame
	b.Fill(&f4, jpeg(5000, 4)) // larger than anything released
	if &f4.JPEG[:1][0] == first {
		t.Error("a frame was read into a buffer too small for it")
	}

	// A frame not filled from Buffers releases to nowhere.
	Frame{JPEG: jpeg(10, 6)}.Release()
}

// TestBuffersFull: releasing more frames than the list holds keeps only
// its bound.

func TestBuffersFull(t *testing.T) {
	var b Buffers
	var held []Frame
	for range 3 * maxFreeBuffers {
		var f Frame
		b.Fill(&f, []byte{1, 2, 3})
		held = append(held, f)
	}
	for _, f := range held {
		f.Release()
	}
	if len(b.free) != maxFreeBuffers {
		t.Errorf("%d buffers kept, want the bound %d", len(b.free), maxFreeBuffers)
	}
}
