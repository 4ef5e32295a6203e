package main

/*
#cgo pkg-config: vpx
#include <stdlib.h>
#include <string.h>
#include <vpx/vpx_encoder.h>
#include <vpx/vp8cx.h>

typedef struct {
	vpx_codec_ctx_t ctx;
	vpx_image_t *img;
	unsigned char *out;
	size_t cap;
	vpx_codec_pts_t pts;
} vp8enc;

static int vp8_open(vp8enc **pe, int w, int h, int fps, int kbps, int kf) {
	vp8enc *e = calloc(1, sizeof(vp8enc));
	if (!e) return -1;
	vpx_codec_enc_cfg_t cfg;
	if (vpx_codec_enc_config_default(vpx_codec_vp8_cx(), &cfg, 0)) { free(e); return -2; }
	cfg.g_w = w; cfg.g_h = h;
	cfg.g_timebase.num = 1; cfg.g_timebase.den = fps;
	cfg.rc_end_usage = VPX_CBR;
	cfg.rc_target_bitrate = kbps;
	cfg.g_lag_in_frames = 0;        // no look-ahead: a frame in, a frame out
	cfg.g_error_resilient = VPX_ERROR_RESILIENT_DEFAULT;
	cfg.g_threads = 1;              // 2 threads on 2 cores stall 90-140 ms
	cfg.kf_mode = VPX_KF_AUTO;
	cfg.kf_max_dist = kf;
	cfg.rc_buf_sz = 1000; cfg.rc_buf_initial_sz = 500; cfg.rc_buf_optimal_sz = 600;
	cfg.rc_dropframe_thresh = 0;
	cfg.rc_min_quantizer = 4; cfg.rc_max_quantizer = 56;
	if (vpx_codec_enc_init(&e->ctx, vpx_codec_vp8_cx(), &cfg, 0)) { free(e); return -3; }
	vpx_codec_control(&e->ctx, VP8E_SET_CPUUSED, -8);  // fixed realtime speed
	vpx_codec_control(&e->ctx, VP8E_SET_STATIC_THRESHOLD, 1);
	e->img = vpx_img_alloc(NULL, VPX_IMG_FMT_I420, w, h, 1);
	if (!e->img) { vpx_codec_destroy(&e->ctx); free(e); return -4; }
	*pe = e;
	return 0;
}

static void copy_plane(unsigned char *dst, int ds, const unsigned char *src, int ss, int w, int h) {
	for (int y = 0; y < h; y++) memcpy(dst + y * ds, src + y * ss, w);
}

// vp8_encode copies the planes in (the encoder keeps no Go memory), encodes,
// and leaves the frame in e->out.
static int vp8_encode(vp8enc *e, const unsigned char *y, const unsigned char *u, const unsigned char *v,
                      int ys, int cs, int key, size_t *n) {
	vpx_image_t *img = e->img;
	int w = img->d_w, h = img->d_h;
	copy_plane(img->planes[0], img->stride[0], y, ys, w, h);
	copy_plane(img->planes[1], img->stride[1], u, cs, (w + 1) / 2, (h + 1) / 2);
	copy_plane(img->planes[2], img->stride[2], v, cs, (w + 1) / 2, (h + 1) / 2);
	if (vpx_codec_encode(&e->ctx, img, e->pts++, 1, key ? VPX_EFLAG_FORCE_KF : 0, VPX_DL_REALTIME)) return -1;
	*n = 0;
	const vpx_codec_cx_pkt_t *pkt;
	vpx_codec_iter_t it = NULL;
	while ((pkt = vpx_codec_get_cx_data(&e->ctx, &it)) != NULL) {
		if (pkt->kind != VPX_CODEC_CX_FRAME_PKT) continue;
		size_t need = *n + pkt->data.frame.sz;
		if (need > e->cap) {
			unsigned char *p = realloc(e->out, need * 2);
			if (!p) return -2;
			e->out = p; e->cap = need * 2;
		}
		memcpy(e->out + *n, pkt->data.frame.buf, pkt->data.frame.sz);
		*n = need;
	}
	return 0;
}

static void vp8_close(vp8enc *e) {
	vpx_codec_destroy(&e->ctx);
	vpx_img_free(e->img);
	free(e->out);
	free(e);
}
*/
import "C"

import (
	"fmt"
	"image"
	"unsafe"
)

// vp8 is libvpx's VP8 encoder through a thin binding: mediadevices' vpx
// package has no speed or thread control, and at its default speed costs
// about 5x the CPU (10 ms vs 2 ms per VGA frame).
type vp8 struct {
	e *C.vp8enc
}

func newVP8(c EncoderConfig) (Encoder, error) {
	var e *C.vp8enc
	fps := max(1, int(c.FPS+0.5))
	if rc := C.vp8_open(&e, C.int(c.Width), C.int(c.Height), C.int(fps), C.int(c.BitrateKbps), C.int(c.keyFrames())); rc != 0 {
		return nil, fmt.Errorf("libvpx: cannot open a VP8 encoder (%d)", int(rc))
	}
	return &vp8{e: e}, nil
}

func (v *vp8) Encode(img *image.YCbCr, key bool) ([]byte, error) {
	var n C.size_t
	k := C.int(0)
	if key {
		k = 1
	}
	rc := C.vp8_encode(v.e, (*C.uchar)(unsafe.Pointer(&img.Y[0])), (*C.uchar)(unsafe.Pointer(&img.Cb[0])),
		(*C.uchar)(unsafe.Pointer(&img.Cr[0])), C.int(img.YStride), C.int(img.CStride), k, &n)
	if rc != 0 {
		return nil, fmt.Errorf("libvpx: encode failed (%d)", int(rc))
	}
	return C.GoBytes(unsafe.Pointer(v.e.out), C.int(n)), nil
}

func (v *vp8) Close() error {
	if v.e != nil {
		C.vp8_close(v.e)
		v.e = nil
	}
	return nil
}
