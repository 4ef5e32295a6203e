package wire

import (
	"encoding/binary"
	"errors"
	"time"
)

// The shared-memory frame transport. gRPC copies a frame four times and
// wakes several goroutines on each side to move it; between camd and a Go
// plugin on the same machine, frames take a shorter path instead:
//
//   - camd starts the plugin with two extra files: a memfd (fd 3) it
//     writes JPEG bytes into, and one end of a SOCK_SEQPACKET socket pair
//     (fd 4) for small messages. EnvFrameFDs says so.
//   - The plugin maps the memfd read-only and, before its go-plugin
//     handshake, sends Hello on the socket. camd reads the handshake after
//     that, so a Hello is already waiting when camd looks; a plugin that
//     sent none (another language, an older SDK) gets frames over gRPC.
//   - For each frame camd copies the bytes into the camera's region of
//     the memfd and sends a Frame message saying where they are. The
//     plugin copies them out, hands the frame to the output and sends Ack.
//     camd writes a camera's region again only after its Ack, which the
//     credit protocol (one frame per camera in flight) gives for free.
//
// Each plugin has its own memfd: an output sees only its own cameras.
// gRPC still carries everything else, including the Frames stream for what
// a plugin says back.

// EnvFrameFDs names the environment variable that tells a plugin the
// memfd and socket descriptors, as "3,4".
const EnvFrameFDs = "CAMD_FRAME_FDS"

// Message kinds, the first byte of every message.
const (
	shmHello = 'H'
	shmFrame = 'F'
	shmAck   = 'A'

	shmVersion = 1
)

// MaxShmMessage bounds a message: a header and a camera name.
const MaxShmMessage = 512

// ErrShmMessage is wrapped by errors about malformed messages.
var ErrShmMessage = errors.New("bad frame transport message")

// ShmHello is the message a plugin sends when it takes frames from shared
// memory.
func ShmHello() []byte { return []byte{shmHello, shmVersion} }

// IsShmHello reports whether b is a Hello this camd understands.
func IsShmHello(b []byte) bool { return len(b) == 2 && b[0] == shmHello && b[1] == shmVersion }

// ShmFrame locates a frame's bytes in the shared memory.
type ShmFrame struct {
	Frame  // all but JPEG
	Offset uint64
	Length uint32
}

const shmFrameHeader = 1 + 1 + 2 + 8 + 8 + 4 + 4 + 8 + 4

// AppendShmFrame appends f's message to b.
func AppendShmFrame(b []byte, f ShmFrame) []byte {
	var flags byte
	if f.Placeholder {
		flags |= 1
	}
	b = append(b, shmFrame, flags)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(f.Camera)))
	b = binary.LittleEndian.AppendUint64(b, f.Seq)
	b = binary.LittleEndian.AppendUint64(b, uint64(f.Captured.UnixNano()))
	b = binary.LittleEndian.AppendUint32(b, uint32(f.Width))
	b = binary.LittleEndian.AppendUint32(b, uint32(f.Height))
	b = binary.LittleEndian.AppendUint64(b, f.Offset)
	b = binary.LittleEndian.AppendUint32(b, f.Length)
	return append(b, f.Camera...)
}

// ParseShmFrame reads a Frame message.
func ParseShmFrame(b []byte) (ShmFrame, error) {
	if len(b) < shmFrameHeader || b[0] != shmFrame {
		return ShmFrame{}, ErrShmMessage
	}
	n := int(binary.LittleEndian.Uint16(b[2:]))
	if len(b) != shmFrameHeader+n {
		return ShmFrame{}, ErrShmMessage
	}
	f := ShmFrame{
		Frame: Frame{
			Camera:      string(b[shmFrameHeader:]),
			Seq:         binary.LittleEndian.Uint64(b[4:]),
			Captured:    time.Unix(0, int64(binary.LittleEndian.Uint64(b[12:]))),
			Width:       int(binary.LittleEndian.Uint32(b[20:])),
			Height:      int(binary.LittleEndian.Uint32(b[24:])),
			Placeholder: b[1]&1 != 0,
		},
		Offset: binary.LittleEndian.Uint64(b[28:]),
		Length: binary.LittleEndian.Uint32(b[36:]),
	}
	if f.Offset > 1<<48 || f.Length > MaxFrameBytes {
		return ShmFrame{}, ErrShmMessage
	}
	return f, nil
}

// AppendShmAck appends the Ack of camera's frame seq to b.
func AppendShmAck(b []byte, camera string, seq uint64) []byte {
	b = append(b, shmAck)
	b = binary.LittleEndian.AppendUint64(b, seq)
	return append(b, camera...)
}

// ParseShmAck reads an Ack message.
func ParseShmAck(b []byte) (camera string, seq uint64, err error) {
	if len(b) < 9 || b[0] != shmAck {
		return "", 0, ErrShmMessage
	}
	return string(b[9:]), binary.LittleEndian.Uint64(b[1:]), nil
}
