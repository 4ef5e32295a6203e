package device

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"strconv"
	"strings"
)

// MultipartReader reads the parts of a multipart/x-mixed-replace (MJPEG)
// body. Unlike mime/multipart it trusts a part's Content-Length when there
// is one, so a frame is delivered as soon as its last byte arrives rather
// than when the next boundary does (which would add a frame of latency with
// CameraWebServer's boundary-before-part framing). Without Content-Length it
// scans for the next boundary.
//
// It accepts the framings seen in the wild: the delimiter before each part
// (ESP32 CameraWebServer, with a leading CRLF) or after it (ESPHome,
// mjpg-streamer), a boundary parameter with or without a leading "--", and
// LF or CRLF line ends.
type MultipartReader struct {
	r *bufio.Reader
	// delims are the lines that may separate parts: "--" + boundary, as
	// RFC 2046 has it, and for a boundary declared with a leading "--"
	// also the boundary as declared, which many servers write instead.
	delims   [][]byte
	maxPart  int
	maxHeads int

	pendingDelim bool   // the last body scan already consumed the next delimiter
	closed       bool   // the closing delimiter was seen
	started      bool   // a delimiter was seen: the preamble is over
	spare        []byte // a body given back with Recycle, for the next part

	// Expect, when set, is told before a part's body is read how many of
	// its bytes the reader does not hold yet (n > 0), and after it 0. The
	// MJPEG source uses it to be woken once per frame (see lowat).
	Expect func(n int)
}

// ErrBadMultipart is wrapped by errors about malformed multipart input.
var ErrBadMultipart = errors.New("bad multipart stream")

// NewMultipartReader returns a reader for parts separated by boundary, each
// at most maxPart bytes. If the stream's first delimiter is not the
// declared one (a server that declares one boundary and writes another),
// or no boundary was declared (""), the first line before the first part
// that looks like a delimiter ("--" and more) is taken as well, as ffmpeg
// and go2rtc do.
func NewMultipartReader(r io.Reader, boundary string, maxPart int) *MultipartReader {
	return &MultipartReader{
		r:        bufio.NewReaderSize(r, 64<<10),
		delims:   delimiters(strings.Trim(boundary, `"`)),
		maxPart:  maxPart,
		maxHeads: 32,
	}
}

// delimiters returns the delimiter lines for boundary, shortest first.
// A boundary declared as "--frame" is written "--frame" by most servers
// (they took the delimiter for the boundary) and "----frame" by those that
// follow RFC 2046; both are accepted.
func delimiters(boundary string) [][]byte {
	if boundary == "" {
		return nil
	}
	rfc := []byte("--" + boundary)
	if bare, ok := strings.CutPrefix(boundary, "--"); ok && bare != "" {
		return [][]byte{[]byte("--" + bare), rfc}
	}
	return [][]byte{rfc}
}

// maxLine bounds header and delimiter lines, so garbage without newlines
// cannot grow memory.
const maxLine = 4096

// NextPart returns the headers and body of the next part. The body is the
// caller's: the reader does not touch it again unless it is given back
// with Recycle.
func (m *MultipartReader) NextPart() (textproto.MIMEHeader, []byte, error) {
	if err := m.skipToDelimiter(); err != nil {
		return nil, nil, err
	}
	hdr, err := m.readHeader()
	if err != nil {
		return nil, nil, err
	}
	if cl := hdr.Get("Content-Length"); cl != "" {
		n, err := strconv.Atoi(strings.TrimSpace(cl))
		if err != nil || n < 0 {
			return nil, nil, fmt.Errorf("%w: bad Content-Length %q", ErrBadMultipart, cl)
		}
		if m.maxPart > 0 && n > m.maxPart {
			return nil, nil, fmt.Errorf("%w: part of %d bytes, limit %d", ErrFrameTooLarge, n, m.maxPart)
		}
		body := m.buffer(n)[:n]
		if m.Expect != nil {
			m.Expect(n - m.r.Buffered())
			defer m.Expect(0)
		}
		if _, err := io.ReadFull(m.r, body); err != nil {
			return nil, nil, fmt.Errorf("%w: part body: %w", ErrBadMultipart, noEOF(err))
		}
		return hdr, body, nil
	}
	body, err := m.readUntilDelimiter()
	if err != nil {
		return nil, nil, err
	}
	return hdr, body, nil
}

// Recycle gives back a body NextPart returned that the caller no longer
// holds (nor any slice of it): the next part is read into it if it fits,
// so a stream whose frames are dropped at once allocates nothing per frame.
func (m *MultipartReader) Recycle(body []byte) {
	if cap(body) > cap(m.spare) {
		m.spare = body
	}
}

// buffer returns an empty slice of capacity at least n for a part's body:
// the recycled one if it is large enough, else a new one.
func (m *MultipartReader) buffer(n int) []byte {
	b := m.spare[:0]
	m.spare = nil
	if cap(b) < n {
		return make([]byte, 0, n)
	}
	return b
}

// skipToDelimiter consumes input up to and including the next delimiter
// line. Blank lines and a part's trailing CRLF are skipped; anything else is
// tolerated only before the first part (a preamble).
func (m *MultipartReader) skipToDelimiter() error {
	if m.closed {
		return io.EOF
	}
	if m.pendingDelim {
		m.pendingDelim = false
		return nil
	}
	// Up to a frame's worth of junk is skipped, so a part whose
	// Content-Length lied is dropped and the stream resynchronises (and a
	// stream that writes delimiters only after parts syncs after its
	// first).
	limit := 64 << 10
	if m.maxPart > limit {
		limit = m.maxPart
	}
	skipped := 0
	for {
		raw, err := m.r.ReadSlice('\n')
		skipped += len(raw)
		if skipped > limit {
			want := "a delimiter line (--...)"
			if len(m.delims) > 0 {
				want = fmt.Sprintf("boundary %q", m.delims[0])
			}
			return fmt.Errorf("%w: no %s in %d bytes", ErrBadMultipart, want, skipped)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF && skipped > 0 {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		line := bytes.TrimRight(raw, "\r\n \t")
		isDelim, closing := m.delimiter(line)
		if !isDelim && !m.started && adoptable(line) {
			// The first delimiter-looking line of the preamble: the
			// boundary actually written, as written ("--video
			// boundary--" is one firmware's delimiter, not a closing).
			m.delims = append(m.delims, bytes.Clone(line))
			isDelim, closing = true, false
		}
		if isDelim {
			m.started = true
			if closing {
				m.closed = true
				return io.EOF // closing delimiter "--boundary--"
			}
			return nil
		}
	}
}

// adoptable reports whether a preamble line can be a delimiter the server
// did not declare: "--" and a boundary of RFC 2046's length, printable
// (so that a first part without its delimiter, binary JPEG, hardly ever
// has such a line).
func adoptable(line []byte) bool {
	if len(line) < 3 || len(line) > 2+70+2 || !bytes.HasPrefix(line, []byte("--")) {
		return false
	}
	for _, c := range line {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// delimiter reports whether line is a delimiter, and whether it is the
// closing one ("--boundary--").
func (m *MultipartReader) delimiter(line []byte) (isDelim, closing bool) {
	line = bytes.TrimRight(line, " \t")
	for _, d := range m.delims {
		if rest, ok := bytes.CutPrefix(line, d); ok && (len(rest) == 0 || string(rest) == "--") {
			return true, len(rest) > 0
		}
	}
	return false, false
}

// atDelimiter reports whether the unread input starts with a delimiter
// (or with data that begins like one).
func (m *MultipartReader) atDelimiter() bool {
	longest := 0
	for _, d := range m.delims {
		longest = max(longest, len(d))
	}
	peek, _ := m.r.Peek(longest)
	for _, d := range m.delims {
		if bytes.HasPrefix(peek, d) {
			return true
		}
	}
	return false
}

func (m *MultipartReader) readHeader() (textproto.MIMEHeader, error) {
	hdr := textproto.MIMEHeader{}
	for n := 0; ; n++ {
		line, err := m.readLine()
		if err != nil {
			return nil, fmt.Errorf("%w: part header: %w", ErrBadMultipart, noEOF(err))
		}
		if len(line) == 0 {
			return hdr, nil
		}
		if n >= m.maxHeads {
			return nil, fmt.Errorf("%w: more than %d part headers", ErrBadMultipart, m.maxHeads)
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok || len(bytes.TrimSpace(k)) == 0 {
			return nil, fmt.Errorf("%w: bad part header line %q", ErrBadMultipart, truncate(line))
		}
		hdr.Add(textproto.CanonicalMIMEHeaderKey(string(bytes.TrimSpace(k))), string(bytes.TrimSpace(v)))
	}
}

// readUntilDelimiter returns the bytes before the next "\r\n--boundary" (or
// "\n--boundary") and leaves the delimiter line consumed.
func (m *MultipartReader) readUntilDelimiter() ([]byte, error) {
	body := m.buffer(0)
	for {
		chunk, err := m.r.ReadSlice('\n')
		body = append(body, chunk...)
		if m.maxPart > 0 && len(body) > m.maxPart+maxLine {
			return nil, fmt.Errorf("%w: part exceeds %d bytes", ErrFrameTooLarge, m.maxPart)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%w: part body: %w", ErrBadMultipart, noEOF(err))
		}
		// body ends with '\n'. Peek whether the delimiter follows.
		if m.atDelimiter() {
			line, err := m.readLine()
			if err != nil {
				return nil, fmt.Errorf("%w: %w", ErrBadMultipart, noEOF(err))
			}
			body = bytes.TrimSuffix(bytes.TrimSuffix(body, []byte("\n")), []byte("\r"))
			isDelim, closing := m.delimiter(line)
			if !isDelim {
				// "--boundaryX..." is data, not a delimiter.
				body = append(append(body, '\r', '\n'), line...)
				body = append(body, '\r', '\n')
				continue
			}
			m.pendingDelim, m.closed = !closing, closing
			return body, nil
		}
	}
}

// readLine reads one line without its line ending, at most maxLine bytes.
func (m *MultipartReader) readLine() ([]byte, error) {
	line, err := m.r.ReadSlice('\n')
	if err == bufio.ErrBufferFull || (err == nil && len(line) > maxLine) {
		return nil, fmt.Errorf("%w: line longer than %d bytes", ErrBadMultipart, maxLine)
	}
	if err != nil {
		if err == io.EOF && len(line) > 0 {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if len(line) > maxLine {
		return nil, fmt.Errorf("%w: line longer than %d bytes", ErrBadMultipart, maxLine)
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	return line, nil
}

func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func truncate(b []byte) []byte {
	if len(b) > 40 {
		return b[:40]
	}
	return b
}
