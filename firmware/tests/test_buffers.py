"""The driver's frame buffers (CAMSERVER_FB_COUNT). CircuitPython holds the
buffer take() returned until the next take() gives it back, and esp32-camera
captures only into a free buffer (tests/shims/espcamera.py models both, see
its docstring). So with one buffer nothing is captured until the firmware
gives it back; and after an idle spell the frame waiting in the driver's
queue is old, with two buffers and GrabMode.LATEST as with one.

The shim's frames say when their capture started ("frame N at T", T on
time.monotonic()), so freshness is checked against the capture itself."""

import contextlib
import json
import struct
import time
import unittest

from harness import Firmware, MJPEGReader, get, read_response  # first: it puts the shims on sys.path
from test_server import untorn
import espcamera  # shim
import shimboards  # shim


def shot(jpeg):
    """(frame number, time.monotonic() its capture started) from the COM
    segment the shim puts after SOI."""
    n = struct.unpack(">H", jpeg[4:6])[0]
    words = jpeg[6:4 + n].split(b" ")  # b"frame", N, b"at", T
    return int(words[1]), float(words[3])


@contextlib.contextmanager
def running(**kw):
    fw = Firmware(**kw)
    try:
        yield fw
    finally:
        fw.stop()
    if fw.error is not None:
        raise fw.error


class TestDriverModel(unittest.TestCase):
    """What the firmware has to live with: the shim's driver, straight."""

    FPS = 50
    PERIOD = 1.0 / FPS

    def camera(self, fb_count):
        b = shimboards.use("espressif_esp32s3_eye")
        espcamera.live_camera = None
        espcamera.FPS = self.FPS
        espcamera.PAD_TO = 0
        grab = espcamera.GrabMode.LATEST if fb_count > 1 else espcamera.GrabMode.WHEN_EMPTY
        cam = espcamera.Camera(data_pins=b.CAMERA_DATA, pixel_clock_pin=b.CAMERA_PCLK,
                               vsync_pin=b.CAMERA_VSYNC, href_pin=b.CAMERA_HREF, i2c=b.I2C(),
                               pixel_format=espcamera.PixelFormat.JPEG, frame_size=espcamera.FrameSize.QVGA,
                               framebuffer_count=fb_count, grab_mode=grab)
        self.addCleanup(cam.deinit)
        return cam

    def take(self, cam):
        """The next frame, as bytes, waiting as long as it takes (up to 5 s)."""
        mv = cam.take(5.0)
        self.assertIsNotNone(mv, "no frame in 5 s")
        return bytes(mv)

    def test_a_held_buffer_is_not_captured_into(self):
        # fb_count, a frame queued while we hold the one take() returned
        cases = [(1, False), (2, True)]
        for fb_count, queued in cases:
            with self.subTest(fb_count=fb_count):
                cam = self.camera(fb_count)
                self.take(cam)
                time.sleep(5 * self.PERIOD)
                self.assertEqual(cam.frame_available, queued)
                if not queued:
                    before = time.monotonic()
                    self.assertIsNone(cam.take(0), "the take() that gives the only buffer back finds none")
                    _, t = shot(self.take(cam))
                    self.assertGreater(t, before, "captured once the buffer was back")
                cam.deinit()

    def test_a_queued_frame_is_old_after_an_idle_spell(self):
        for fb_count in (1, 2):
            with self.subTest(fb_count=fb_count):
                cam = self.camera(fb_count)
                self.take(cam)
                if fb_count == 1:
                    cam.take(0)  # give the only buffer back, as the firmware does
                idle_from = time.monotonic()
                time.sleep(10 * self.PERIOD)
                self.assertTrue(cam.frame_available)
                _, t = shot(self.take(cam))
                self.assertLessEqual(t, idle_from + self.PERIOD, "LATEST replaced it: it had no free buffer")
                cam.deinit()

    def test_a_frame_lasts_until_the_next_take(self):
        cam = self.camera(2)
        mv = cam.take(5.0)
        frame = bytes(mv)
        self.assertTrue(untorn(frame))
        self.assertEqual(bytes(mv), frame)
        self.take(cam)
        self.assertNotEqual(bytes(mv), frame, "given back: the driver may overwrite it")

    def test_an_empty_take_loses_the_frame_being_captured(self):
        cam = self.camera(2)
        self.take(cam)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            while not cam.capturing:
                time.sleep(self.PERIOD / 4)
            if cam.take(0) is None:  # else the frame was done meanwhile: again
                break
        self.assertEqual(cam.dma_resets, 1)

    def test_reconfigure_keeps_the_held_buffer(self):
        """CircuitPython's reconfigure() frees the buffers but gives the
        held one back at the next take(): that frame may be torn, unless
        the buffer was given back before (take() until none)."""
        # give back before reconfigure, the first frame after it untorn
        cases = [(False, False), (True, True)]
        for give_back, whole in cases:
            with self.subTest(give_back=give_back):
                cam = self.camera(2)
                self.take(cam)
                while give_back and cam.take(0) is not None:
                    pass
                cam.reconfigure(frame_size=espcamera.FrameSize.QQVGA)
                time.sleep(3 * self.PERIOD)
                self.assertEqual(untorn(self.take(cam)), whole)
                cam.deinit()


class TestFrameBuffers(unittest.TestCase):
    """The firmware with each CAMSERVER_FB_COUNT."""

    def test_frames_keep_coming(self):
        """/capture and /stream go on frame after frame, each new and
        whole, with one driver buffer as with two."""
        for fb_count in (1, 2):
            with self.subTest(fb_count=fb_count), running(fb_count=fb_count, capture_timeout_ms=1000) as fw:
                c = fw.connect()
                shots = []
                for i in range(20):
                    c.sendall(b"GET /capture HTTP/1.1\r\nHost: cam\r\n\r\n")
                    status, _, body = read_response(c)
                    self.assertEqual(status, 200, "capture %d" % (i + 1))
                    self.assertTrue(untorn(body))
                    shots.append(shot(body))
                c.close()
                self.assertEqual(shots, sorted(set(shots)), "each capture a new frame")

                r = MJPEGReader(fw)
                deadline = time.time() + 20
                while len(r.parts) < 20 and r.error is None and time.time() < deadline:
                    time.sleep(0.02)
                r.close()
                r.join(2)
                self.assertGreaterEqual(len(r.parts), 20, "the stream stalled")
                seqs = [s for s, _ in r.parts]
                self.assertEqual(seqs, sorted(set(seqs)))
                for _, jpeg in r.parts:
                    self.assertTrue(untorn(jpeg))
                self.assertTrue(fw.wait_idle())

    def test_first_capture_after_idle_is_fresh(self):
        """Once nobody has asked for longer than linger_ms the camera
        idles; the first /capture after that is a frame whose capture
        began after the request was sent, not the one that waited in the
        driver's queue meanwhile (which X-Timestamp would call new)."""
        for fb_count in (1, 2):
            with self.subTest(fb_count=fb_count), running(fb_count=fb_count, linger_ms=300) as fw:
                self.assertEqual(get(fw, "/capture")[0], 200)
                took = []
                for i in range(2):
                    time.sleep(0.3 + 1.0)  # linger, then idle
                    sent = time.monotonic()
                    status, h, body = get(fw, "/capture")
                    took.append(time.monotonic() - sent)
                    self.assertEqual(status, 200)
                    _, captured = shot(body)
                    self.assertGreater(captured, sent, "idle spell %d: a frame %.2f s old" % (
                        i + 1, sent - captured))
                status, _, body = get(fw, "/status")
                self.assertGreaterEqual(json.loads(body)["stale_dropped"], 2, "the frames queued while idle")
                print("\n  hostsim: fb_count %d: first /capture after an idle spell in %.0f ms (30 fps camera)" % (
                    fb_count, max(took) * 1000), end="")
                self.assertTrue(fw.wait_idle())

if __name__ == "__main__":
    unittest.main()
