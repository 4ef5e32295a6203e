package device

import (
	"image"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// canvas is a 4:2:0 Y'CbCr picture with the little drawing camd needs for
// the pictures it makes itself (the simulated camera and the offline
// placeholder): filled rectangles and basicfont text scaled up by whole
// pixels. Y'CbCr because that is what the JPEG encoder takes without a
// conversion.
type canvas struct {
	img    *image.YCbCr
	glyphs *image.Alpha // scratch: one line of text at scale 1
}

// Glyph cell of basicfont.Face7x13.
const (
	glyphW = 7
	glyphH = 13
)

func newCanvas(w, h int) *canvas {
	return &canvas{img: image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio420)}
}

func (c *canvas) size() (w, h int) { return c.img.Rect.Dx(), c.img.Rect.Dy() }

// fill paints a rectangle in Y'CbCr, clipped to the picture.
func (c *canvas) fill(x0, y0, w, h int, yv, cb, cr uint8) {
	img := c.img
	b := img.Rect
	x1, y1 := min(x0+w, b.Max.X), min(y0+h, b.Max.Y)
	x0, y0 = max(x0, 0), max(y0, 0)
	for y := y0; y < y1; y++ {
		row := img.Y[y*img.YStride:]
		for x := x0; x < x1; x++ {
			row[x] = yv
		}
	}
	for y := y0 / 2; y < (y1+1)/2; y++ {
		for x := x0 / 2; x < (x1+1)/2; x++ {
			i := y*img.CStride + x
			img.Cb[i], img.Cr[i] = cb, cr
		}
	}
}

// text draws s with basicfont scaled up by scale, its cell's top-left at
// (x, y), setting luma to yv and leaving chroma as it is (so text takes
// the colour of what is under it, lightened or darkened). A line is
// glyphW*scale pixels per character wide and glyphH*scale high.
func (c *canvas) text(s string, scale, x, y int, yv uint8) {
	if s == "" || scale < 1 {
		return
	}
	tw := len(s) * glyphW
	if c.glyphs == nil || c.glyphs.Rect.Dx() < tw {
		c.glyphs = image.NewAlpha(image.Rect(0, 0, tw, glyphH))
	}
	a := c.glyphs
	clear(a.Pix)
	d := font.Drawer{Dst: a, Src: image.Opaque, Face: basicfont.Face7x13, Dot: fixed.P(0, 11)}
	d.DrawString(s)
	img := c.img
	w, h := c.size()
	for ty := 0; ty < glyphH; ty++ {
		for tx := 0; tx < tw; tx++ {
			if a.Pix[ty*a.Stride+tx] < 128 {
				continue
			}
			for dy := 0; dy < scale; dy++ {
				py := y + ty*scale + dy
				if py < 0 || py >= h {
					continue
				}
				row := img.Y[py*img.YStride:]
				for dx := 0; dx < scale; dx++ {
					if px := x + tx*scale + dx; px >= 0 && px < w {
						row[px] = yv
					}
				}
			}
		}
	}
}
