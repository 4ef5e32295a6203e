package main

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
)

// streamParser follows one MJPEG response as its bytes arrive, in pieces of
// any size: the HTTP response head, the chunked transfer coding if the
// relay uses it (go2rtc does, through net/http; camd's plugin writes a raw
// body), and multipart parts by their Content-Length. It copies only the
// first bytes of each frame, which hold the source's stamp, so a viewer
// costs little more than the read system call that brings the bytes.
type streamParser struct {
	// frame is called at each frame's last byte with the frame's first
	// bytes (up to stampOffset+stampLen).
	frame func(start []byte)

	inBody  bool   // the response head is over
	chunked bool   // the body has the chunked transfer coding
	hline   []byte // a partial line of the head or a chunk-size line
	status  bool   // the status line was read

	chunk     int  // chunked: bytes left in the current chunk
	afterData bool // chunked: a chunk's data ended; its CRLF comes next

	mline     []byte // a partial line of the multipart layer
	inHeaders bool   // a part's header lines are being read
	length    int    // the current part's Content-Length, -1 if none yet
	left      int    // bytes of the current part's body still to come
	start     [stampOffset + stampLen]byte
	got       int // bytes of start filled
}

func newStreamParser(frame func(start []byte)) *streamParser {
	return &streamParser{frame: frame, length: -1}
}

// maxLine bounds the lines the parser buffers, so garbage cannot grow it.
const maxLine = 4096

// errStreamEnded is returned when the relay ends the body.
var errStreamEnded = errors.New("the stream ended")

// feed parses the next bytes of the response.
func (p *streamParser) feed(b []byte) error {
	for !p.inBody && len(b) > 0 {
		line, rest, ok := nextLine(&p.hline, b)
		b = rest
		if !ok {
			return bounded(p.hline)
		}
		if err := p.headLine(line); err != nil {
			return err
		}
	}
	if !p.chunked {
		return p.multipart(b)
	}
	for len(b) > 0 {
		switch {
		case p.chunk > 0:
			n := min(len(b), p.chunk)
			if err := p.multipart(b[:n]); err != nil {
				return err
			}
			p.chunk -= n
			p.afterData = p.chunk == 0
			b = b[n:]
		case p.afterData: // the CRLF after a chunk's data
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				return nil
			}
			p.afterData, b = false, b[i+1:]
		default:
			line, rest, ok := nextLine(&p.hline, b)
			b = rest
			if !ok {
				return bounded(p.hline)
			}
			if i := bytes.IndexByte(line, ';'); i >= 0 {
				line = line[:i]
			}
			n, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 32)
			if err != nil || n < 0 {
				return fmt.Errorf("bad chunk size %q", line)
			}
			if n == 0 {
				return errStreamEnded
			}
			p.chunk = int(n)
		}
	}
	return nil
}

// headLine takes a line of the response head.
func (p *streamParser) headLine(line []byte) error {
	if !p.status {
		p.status = true
		if f := bytes.Fields(line); len(f) < 2 || !bytes.HasPrefix(f[0], []byte("HTTP/")) || string(f[1]) != "200" {
			return fmt.Errorf("response %q", line)
		}
		return nil
	}
	if len(line) == 0 {
		p.inBody = true
		return nil
	}
	if k, v, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(bytes.TrimSpace(k), []byte("Transfer-Encoding")) {
		p.chunked = bytes.Contains(bytes.ToLower(v), []byte("chunked"))
	}
	return nil
}

// multipart takes body bytes: part header lines, then Content-Length bytes
// of frame. Delimiter lines and blank lines between parts are skipped,
// which covers the framings relays use.
func (p *streamParser) multipart(b []byte) error {
	for len(b) > 0 {
		if p.left > 0 {
			n := min(len(b), p.left)
			if p.got < len(p.start) {
				p.got += copy(p.start[p.got:], b[:n])
			}
			p.left -= n
			b = b[n:]
			if p.left == 0 {
				p.frame(p.start[:p.got])
			}
			continue
		}
		line, rest, ok := nextLine(&p.mline, b)
		b = rest
		if !ok {
			return bounded(p.mline)
		}
		switch {
		case len(line) == 0 && p.inHeaders:
			if p.length <= 0 {
				return errors.New("part without Content-Length")
			}
			p.left, p.got, p.length, p.inHeaders = p.length, 0, -1, false
		case len(line) == 0 || bytes.HasPrefix(line, []byte("--")):
		default:
			p.inHeaders = true
			if k, v, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(bytes.TrimSpace(k), []byte("Content-Length")) {
				n, err := strconv.Atoi(string(bytes.TrimSpace(v)))
				if err != nil || n < 0 {
					return fmt.Errorf("bad Content-Length %q", v)
				}
				p.length = n
			}
		}
	}
	return nil
}

// nextLine returns the next whole line of b (without its CR LF), joined to
// what *buf holds of it, and the bytes after it; or, when b ends before
// the line does, keeps b in *buf and returns ok false. The line is only
// valid until the next call.
func nextLine(buf *[]byte, b []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		*buf = append(*buf, b...)
		return nil, nil, false
	}
	line, rest = b[:i], b[i+1:]
	if len(*buf) > 0 {
		*buf = append(*buf, line...)
		line = *buf
	}
	*buf = (*buf)[:0]
	return bytes.TrimSuffix(line, []byte("\r")), rest, true
}

// bounded fails once a partial line outgrows maxLine.
func bounded(buf []byte) error {
	if len(buf) > maxLine {
		return fmt.Errorf("a line of more than %d bytes", maxLine)
	}
	return nil
}
