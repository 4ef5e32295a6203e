package device

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Errors returned by CheckJPEG.
var (
	ErrEmptyFrame    = errors.New("empty frame")
	ErrFrameTooLarge = errors.New("frame too large")
	ErrNotJPEG       = errors.New("not a JPEG (no SOI marker)")
	ErrTruncatedJPEG = errors.New("truncated JPEG (no EOI marker)")
	ErrCorruptJPEG   = errors.New("corrupt JPEG")
)

// CheckJPEG checks that b is a whole baseline or progressive JPEG no larger
// than max bytes and returns its size. It walks the marker segments up to the
// frame header and requires the EOI marker at the end; it does not decode
// the image, so it costs microseconds.
//
// Some camera drivers pad the buffer after EOI with zero bytes, and MJPEG
// servers often end a part with a blank line or two that the multipart
// framing does not strip (Flask/OpenCV's jpeg + "\r\n\r\n" without a
// Content-Length, or a Content-Length that counts the CRLF): that padding
// is accepted and the returned length n excludes it. Anything else after
// the last EOI is a truncated frame.
func CheckJPEG(b []byte, max int) (width, height, n int, err error) {
	if len(b) == 0 {
		return 0, 0, 0, ErrEmptyFrame
	}
	if max > 0 && len(b) > max {
		return 0, 0, 0, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, len(b), max)
	}
	if len(b) < 4 || b[0] != 0xFF || b[1] != 0xD8 {
		return 0, 0, 0, ErrNotJPEG
	}
	n = trimPadding(b)
	if n < 4 || b[n-2] != 0xFF || b[n-1] != 0xD9 {
		return 0, 0, 0, ErrTruncatedJPEG
	}
	// Walk segments: FF xx [len16 payload]. Stop at the first SOF.
	i := 2
	for i+4 <= n {
		if b[i] != 0xFF {
			return 0, 0, 0, fmt.Errorf("%w: expected marker at offset %d", ErrCorruptJPEG, i)
		}
		m := b[i+1]
		switch {
		case m == 0xFF: // fill byte
			i++
			continue
		case m == 0x01 || (m >= 0xD0 && m <= 0xD7): // markers without a length
			i += 2
			continue
		case m == 0xD9 || m == 0xDA: // EOI or SOS before any SOF
			return 0, 0, 0, fmt.Errorf("%w: no frame header", ErrCorruptJPEG)
		}
		segLen := int(binary.BigEndian.Uint16(b[i+2:]))
		if segLen < 2 || i+2+segLen > n {
			return 0, 0, 0, fmt.Errorf("%w: segment %#x at offset %d overruns the frame", ErrCorruptJPEG, m, i)
		}
		if isSOF(m) {
			if segLen < 8 {
				return 0, 0, 0, fmt.Errorf("%w: short frame header", ErrCorruptJPEG)
			}
			height = int(binary.BigEndian.Uint16(b[i+5:]))
			width = int(binary.BigEndian.Uint16(b[i+7:]))
			if width == 0 || height == 0 {
				return 0, 0, 0, fmt.Errorf("%w: zero image size", ErrCorruptJPEG)
			}
			return width, height, n, nil
		}
		i += 2 + segLen
	}
	return 0, 0, 0, fmt.Errorf("%w: no frame header", ErrCorruptJPEG)
}

// maxSpaceTail is how much white space may follow EOI: a line end or two
// left by the framing, with room for odd servers. More is not padding.
const maxSpaceTail = 16

// trimPadding returns the length of b without the padding after its EOI
// marker: zero bytes, as many as a driver's buffer has, and at most
// maxSpaceTail bytes of white space (CR, LF, space, tab). It stops at the
// first other byte, which is EOI's D9 when b is whole.
func trimPadding(b []byte) int {
	n, spaces := len(b), 0
	for n > 2 {
		switch b[n-1] {
		case 0:
		case '\r', '\n', ' ', '\t':
			if spaces++; spaces > maxSpaceTail {
				return n
			}
		default:
			return n
		}
		n--
	}
	return n
}

// isSOF reports whether m is a start-of-frame marker (C0–CF except DHT C4,
// JPG C8 and DAC CC).
func isSOF(m byte) bool {
	return m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC
}
