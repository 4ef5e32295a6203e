package device

import (
	"bytes"
	"fmt"
	"image/jpeg"
	"strings"
	"time"
)

// Placeholder picture size when the camera never sent a frame.
const (
	placeholderW = 640
	placeholderH = 480
)

// placeholderInfo is what a placeholder says.
type placeholderInfo struct {
	Camera string
	Since  time.Time // the last good frame, or when the camera started
	Seen   bool      // whether the camera delivered a frame since it started
	Reason string    // why, in plain words, without secrets
	Now    time.Time
}

// lines returns the small-print text of the placeholder, before wrapping.
func (p placeholderInfo) lines() (since, reason string) {
	at := p.Since.Format("15:04:05")
	if y, m, d := p.Since.Date(); y != p.Now.Year() || m != p.Now.Month() || d != p.Now.Day() {
		at = p.Since.Format("Jan 2 15:04:05")
	}
	ago := ago(p.Now.Sub(p.Since))
	if p.Seen {
		since = fmt.Sprintf("last frame %s, %v ago", at, ago)
	} else {
		since = fmt.Sprintf("no frame since start %s, %v ago", at, ago)
	}
	reason = p.Reason
	if reason == "" {
		reason = "waiting for the device"
	}
	return since, reason
}

// ago formats how long a camera has been away, coarser as it grows: the
// text (and so the picture) changes once a second in the first minute and
// once a minute after, so a long outage costs next to nothing (see
// placeholder.render).
func ago(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// placeholder draws and encodes the picture a camera sends while it has
// no frames. It keeps its canvas and buffer between calls: once a second
// for as long as a camera is away should cost next to nothing. It is not
// safe for concurrent use.
type placeholder struct {
	c   *canvas
	buf bytes.Buffer

	key  string // what the last picture showed, at what size
	last []byte // and its JPEG, handed out again while nothing changed
}

// Colours, Y'CbCr (BT.601, studio range).
const (
	phBackY, phBackCb, phBackCr = 40, 140, 124 // dark slate
	phBandY, phBandCb, phBandCr = 70, 100, 200 // dim red
	phWhite                     = 235
	phGrey                      = 190
)

// render returns a w×h JPEG saying that info.Camera is offline. Text is
// scaled with the picture, so it reads on a phone at any camera size. While
// the text stays the same, the same JPEG is returned again (frames' JPEG
// bytes are read-only to all who get them).
func (p *placeholder) render(w, h int, info placeholderInfo) ([]byte, error) {
	w, h = max(w&^1, 64), max(h&^1, 48)
	since, reason := info.lines()
	key := fmt.Sprintf("%dx%d\n%s\n%s\n%s", w, h, info.Camera, since, reason)
	if key == p.key {
		return p.last, nil
	}
	if p.c == nil {
		p.c = newCanvas(w, h)
	} else if cw, ch := p.c.size(); cw != w || ch != h {
		p.c = newCanvas(w, h)
	}
	c := p.c
	c.fill(0, 0, w, h, phBackY, phBackCb, phBackCr)

	margin := max(2, w/40)
	width := w - 2*margin
	// fit returns the largest scale up to want at which n characters fit.
	fit := func(n, want int) int { return max(1, min(want, width/max(1, n*glyphW))) }
	y := margin

	// "OFFLINE" on a red band across the top.
	title := "OFFLINE"
	s := fit(len(title), max(1, h/80))
	pad := max(1, s*2)
	c.fill(0, 0, w, y+glyphH*s+pad, phBandY, phBandCb, phBandCr)
	c.text(title, s, (w-len(title)*glyphW*s)/2, y, phWhite)
	y += glyphH*s + pad + margin

	name := printable(info.Camera)
	s = fit(len(name), max(1, h/96))
	c.text(name, s, margin, y, phWhite)
	y += glyphH*s + margin

	// The small print, wrapped to the width, as many lines as fit.
	s = max(1, h/160)
	perLine := max(1, width/(glyphW*s))
	lineH := glyphH*s + s*2
	room := max(1, (h-y)/lineH)
	sinceLines := wrap(printable(since), perLine, room)
	reasonLines := wrap(printable(reason), perLine, max(1, room-len(sinceLines)))
	for i, l := range append(sinceLines, reasonLines...) {
		yv := uint8(phGrey)
		if i >= len(sinceLines) {
			yv = phWhite
		}
		if y+glyphH*s > h {
			break
		}
		c.text(l, s, margin, y, yv)
		y += lineH
	}

	p.buf.Reset()
	if err := jpeg.Encode(&p.buf, c.img, &jpeg.Options{Quality: 70}); err != nil {
		return nil, fmt.Errorf("placeholder: %w", err)
	}
	p.key, p.last = key, bytes.Clone(p.buf.Bytes())
	return p.last, nil
}

// printable replaces what basicfont cannot draw (anything but printable
// ASCII) with '?', so a character is one glyph cell.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '?'
		}
		return r
	}, s)
}

// wrap breaks s into lines of at most width characters at spaces (a word
// longer than a line is cut), at most maxLines of them; if s needs more,
// the last line ends in "...".
func wrap(s string, width, maxLines int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(s) {
		for len(word) > width {
			if line != "" {
				lines, line = append(lines, line), ""
			}
			lines, word = append(lines, word[:width]), word[width:]
		}
		switch {
		case line == "":
			line = word
		case len(line)+1+len(word) <= width:
			line += " " + word
		default:
			lines, line = append(lines, line), word
		}
	}
	if line != "" {
		lines = append(lines, line)
	}
	if len(lines) > maxLines {
		lines = lines[:maxLines]
		last := lines[maxLines-1]
		if len(last)+3 > width {
			last = last[:max(0, width-3)]
		}
		lines[maxLines-1] = last + "..."
	}
	return lines
}
