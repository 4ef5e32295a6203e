package main

/*
#cgo pkg-config: libturbojpeg
#include <turbojpeg.h>

static int tj_header(tjhandle h, const unsigned char *jpg, unsigned long n, int *w, int *hh, int *samp) {
	int cs;
	return tjDecompressHeader3(h, jpg, n, w, hh, samp, &cs);
}

// tj_planes decodes to planar YCbCr in the JPEG's own subsampling. The plane
// array lives here, in C: Go may not store Go pointers in C memory.
static int tj_planes(tjhandle h, const unsigned char *jpg, unsigned long n,
                     unsigned char *y, unsigned char *u, unsigned char *v, int w, int ys, int cs, int hh) {
	unsigned char *planes[3] = {y, u, v};
	int strides[3] = {ys, cs, cs};
	return tjDecompressToYUVPlanes(h, jpg, n, planes, w, strides, hh, TJFLAG_FASTDCT | TJFLAG_LIMITSCANS);
}
*/
import "C"

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"unsafe"
)

// Decoder turns JPEG frames into 4:2:0 images for the encoders, reusing
// its buffers. It uses libturbojpeg (about 4x faster than image/jpeg) and
// falls back to image/jpeg for what libturbojpeg cannot do directly.
type Decoder struct {
	h     C.tjhandle
	img   *image.YCbCr // the output, reused while the size holds
	tmp   []byte       // 4:2:2 chroma before downsampling
	Turbo bool         // false: use image/jpeg only
}

// NewDecoder returns a decoder; Close frees it.
func NewDecoder() *Decoder {
	d := &Decoder{Turbo: true}
	d.h = C.tjInitDecompress()
	if d.h == nil {
		d.Turbo = false
	}
	return d
}

// Close frees the decoder.
func (d *Decoder) Close() {
	if d.h != nil {
		C.tjDestroy(d.h)
		d.h = nil
	}
}

// MaxPixels bounds the images Decode accepts (4096x4096): a corrupt or
// hostile header must not make the plugin allocate gigabytes.
const MaxPixels = 4096 * 4096

// Decode decodes a JPEG into a 4:2:0 image with even dimensions (odd ones
// are cropped by a pixel). The image is reused by the next Decode.
func (d *Decoder) Decode(b []byte) (*image.YCbCr, error) {
	if len(b) < 4 {
		return nil, errors.New("jpeg: too short")
	}
	if d.Turbo {
		var w, h, samp C.int
		if C.tj_header(d.h, (*C.uchar)(unsafe.Pointer(&b[0])), C.ulong(len(b)), &w, &h, &samp) == 0 {
			if err := checkSize(int(w), int(h)); err != nil {
				return nil, err
			}
			switch samp {
			case C.TJSAMP_420:
				img := d.output(int(w), int(h))
				if err := d.planes(b, img.Y, img.Cb, img.Cr, int(w), int(h), img.YStride, img.CStride); err != nil {
					return nil, err
				}
				return d.crop(img, int(w), int(h)), nil
			case C.TJSAMP_422:
				// ESP32 sensors often send 4:2:2: decode, then average
				// chroma row pairs.
				img := d.output(int(w), int(h))
				cw := (int(w) + 1) / 2
				if need := 2 * cw * int(h); cap(d.tmp) < need {
					d.tmp = make([]byte, need)
				}
				cb, cr := d.tmp[:cw*int(h)], d.tmp[cw*int(h):2*cw*int(h)]
				if err := d.planes(b, img.Y, cb, cr, int(w), int(h), img.YStride, cw); err != nil {
					return nil, err
				}
				halveRows(img.Cb, cb, cw, int(h), img.CStride)
				halveRows(img.Cr, cr, cw, int(h), img.CStride)
				return d.crop(img, int(w), int(h)), nil
			}
		}
	}
	return d.decodeStd(b)
}

func (d *Decoder) planes(b, y, u, v []byte, w, h, ys, cs int) error {
	rc := C.tj_planes(d.h, (*C.uchar)(unsafe.Pointer(&b[0])), C.ulong(len(b)),
		(*C.uchar)(unsafe.Pointer(&y[0])), (*C.uchar)(unsafe.Pointer(&u[0])), (*C.uchar)(unsafe.Pointer(&v[0])),
		C.int(w), C.int(ys), C.int(cs), C.int(h))
	if rc != 0 {
		return fmt.Errorf("jpeg: %s", C.GoString(C.tjGetErrorStr2(d.h)))
	}
	return nil
}

// output returns the reusable 4:2:0 image for w x h (rounded up to even).
func (d *Decoder) output(w, h int) *image.YCbCr {
	r := image.Rect(0, 0, (w+1)&^1, (h+1)&^1)
	if d.img == nil || d.img.Rect != r {
		d.img = image.NewYCbCr(r, image.YCbCrSubsampleRatio420)
	}
	return d.img
}

// crop makes the image even-sized, as encoders need.
func (d *Decoder) crop(img *image.YCbCr, w, h int) *image.YCbCr {
	if w%2 == 0 && h%2 == 0 {
		return img
	}
	return img.SubImage(image.Rect(0, 0, w&^1, h&^1)).(*image.YCbCr)
}

func halveRows(dst, src []byte, w, h, dstStride int) {
	for y := 0; y < h/2; y++ {
		a, b := src[2*y*w:2*y*w+w], src[(2*y+1)*w:(2*y+1)*w+w]
		row := dst[y*dstStride : y*dstStride+w]
		for x := range row {
			row[x] = uint8((uint16(a[x]) + uint16(b[x]) + 1) / 2)
		}
	}
}

// decodeStd is the image/jpeg path, converting to 4:2:0 when needed.
func (d *Decoder) decodeStd(b []byte) (*image.YCbCr, error) {
	c, err := jpeg.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	if err := checkSize(c.Width, c.Height); err != nil {
		return nil, err
	}
	m, err := jpeg.Decode(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	r := m.Bounds()
	w, h := r.Dx()&^1, r.Dy()&^1
	switch m := m.(type) {
	case *image.YCbCr:
		if m.SubsampleRatio == image.YCbCrSubsampleRatio420 && r.Min == (image.Point{}) {
			return d.crop(m, r.Dx(), r.Dy()), nil
		}
		// Other subsamplings: luma as is, chroma sampled every other pixel.
		out := d.output(w, h)
		for y := 0; y < h; y++ {
			copy(out.Y[y*out.YStride:y*out.YStride+w], m.Y[m.YOffset(r.Min.X, r.Min.Y+y):])
		}
		for y := 0; y < h/2; y++ {
			for x := 0; x < w/2; x++ {
				i, o := m.COffset(r.Min.X+2*x, r.Min.Y+2*y), y*out.CStride+x
				out.Cb[o], out.Cr[o] = m.Cb[i], m.Cr[i]
			}
		}
		return out, nil
	case *image.Gray:
		out := d.output(w, h)
		for y := 0; y < h; y++ {
			copy(out.Y[y*out.YStride:y*out.YStride+w], m.Pix[y*m.Stride:])
		}
		for i := range out.Cb {
			out.Cb[i], out.Cr[i] = 128, 128
		}
		return out, nil
	}
	// CMYK and anything else: the slow, general way.
	out := d.output(w, h)
	for yy := 0; yy < h; yy++ {
		for xx := 0; xx < w; xx++ {
			c := m.At(r.Min.X+xx, r.Min.Y+yy)
			cr, cg, cb, _ := c.RGBA()
			Y, Cb, Cr := color.RGBToYCbCr(uint8(cr>>8), uint8(cg>>8), uint8(cb>>8))
			out.Y[yy*out.YStride+xx] = Y
			if yy%2 == 0 && xx%2 == 0 {
				i := (yy/2)*out.CStride + xx/2
				out.Cb[i], out.Cr[i] = Cb, Cr
			}
		}
	}
	return out, nil
}

func checkSize(w, h int) error {
	if w < 2 || h < 2 || w*h > MaxPixels {
		return fmt.Errorf("jpeg: %dx%d is outside 2x2 to %d pixels", w, h, MaxPixels)
	}
	return nil
}
