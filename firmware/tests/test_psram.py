"""The driver's frame buffers and PSRAM. esp32-camera allocates
framebuffer_count JPEG buffers of width * height / 5 bytes in PSRAM, which
the CircuitPython heap shares. At start a buffer that does not fit is
espidf.IDFError (ESP_FAIL), not a MemoryError; on reconfigure() nobody
checks, and the next take() dereferences NULL: the board hard-faults.
The shims model both on each board's real PSRAM (tests/shims/espidf.py,
espcamera.py), so camserver must refuse such a size before asking."""

import gc
import json
import unittest

from harness import Boot, Firmware, MJPEGReader, free_port, get, wait_for  # first: it puts the shims on sys.path
from test_server import ServerTest, jpeg_size, untorn
import espcamera  # shim
import espidf  # shim
import microcontroller  # shim
import shimboards  # shim

from camserver import camera as camserver_camera

# The tightest board: 2 MB of PSRAM (mpconfigboard.mk), an OV5640 whose
# largest size (QSXGA, 2560x1920) needs 2 x 983040 bytes of buffers.
TIGHT = "adafruit_esp32s3_camera"


class TestShimPSRAM(unittest.TestCase):
    """The shim fails where the board fails."""

    def camera(self, size, fb_count=2):
        b = shimboards.use(TIGHT)
        espcamera.live_camera = None
        return espcamera.Camera(data_pins=b.CAMERA_DATA, pixel_clock_pin=b.CAMERA_PCLK,
                                vsync_pin=b.CAMERA_VSYNC, href_pin=b.CAMERA_HREF, i2c=b.I2C(),
                                external_clock_pin=b.CAMERA_XCLK,
                                pixel_format=espcamera.PixelFormat.JPEG,
                                frame_size=getattr(espcamera.FrameSize, size), framebuffer_count=fb_count,
                                grab_mode=espcamera.GrabMode.LATEST)

    def test_budget_is_the_boards(self):
        shimboards.use(TIGHT)
        self.assertEqual(espidf.get_total_psram(), 2 * 1024 * 1024)
        before = espidf.heap_caps_get_largest_free_block()
        cam = self.camera("VGA")
        self.addCleanup(cam.deinit)
        self.assertEqual(cam.sensor_name, "OV5640")
        self.assertEqual(str(cam.max_frame_size), "FrameSize.QSXGA")
        self.assertEqual(before - espidf.heap_caps_get_largest_free_block(), 2 * 640 * 480 // 5)
        shimboards.use("ai-thinker-esp32-cam")  # 8 MB, but an ESP32 maps 4 MB, less the himem reserve
        self.assertEqual(espidf.get_total_psram(), 4 * 1024 * 1024 - 256 * 1024)

    def test_start_without_room_is_idferror(self):
        with self.assertRaises(espidf.IDFError) as e:
            self.camera("QSXGA")
        self.assertNotIsInstance(e.exception, MemoryError)
        self.assertEqual(str(e.exception), "Generic Failure")  # ESP_FAIL
        self.assertIn(7, microcontroller._held())  # like any failed start: pins held until collected
        gc.collect()
        self.camera("QSXGA", fb_count=1).deinit()  # one buffer fits

    def test_reconfigure_without_room_hard_faults_later(self):
        cam = self.camera("VGA")
        self.addCleanup(cam.deinit)
        self.assertIsNotNone(cam.take(2))
        cam.reconfigure(frame_size=espcamera.FrameSize.QSXGA)  # returns as on the board
        for what in (lambda: cam.frame_available, lambda: cam.take(0)):
            with self.assertRaisesRegex(espcamera.HardFault, "board would hard-fault.*cam_obj is NULL"):
                what()
        self.assertFalse(isinstance(espcamera.HardFault("x"), Exception))  # no `except Exception` hides it
        espcamera.hard_fault = None
        cam.reconfigure(frame_size=espcamera.FrameSize.VGA)  # a new cam_obj: it works again
        self.assertIsNotNone(cam.take(2))


class TestFramesizeOnTightestBoard(ServerTest):
    fw_args = {"board": TIGHT, "size": "VGA", "fb_count": 2}

    def status(self):
        return json.loads(get(self.fw, "/status")[2])

    def test_too_big_is_refused_and_the_board_keeps_serving(self):
        cam = self.fw.app.camera.cam
        r = MJPEGReader(self.fw)
        self.assertTrue(wait_for(lambda: r.parts), "no frame")
        self.assertEqual(self.status()["sensor"], "OV5640")
        code, _, body = get(self.fw, "/control?var=framesize&val=23")  # QSXGA, the OV5640's largest
        self.assertEqual(code, 400, body)
        self.assertIn(b"QSXGA", body)
        self.assertIn(b"frame buffer", body)
        self.assertEqual(cam.reconfigures, 0, "nothing was changed")
        st = self.status()
        self.assertEqual((st["framesize"], st["width"], st["height"]), (10, 640, 480))
        n = len(r.parts)
        code, _, jpeg = get(self.fw, "/capture")
        self.assertEqual((code, jpeg_size(jpeg)), (200, (640, 480)))
        self.assertTrue(untorn(jpeg))
        wait_for(lambda: len(r.parts) > n or r.error)
        self.assertGreater(len(r.parts), n, "the stream went on")
        # A size that fits still works: UXGA's 2 x 384000 bytes.
        code, _, body = get(self.fw, "/control?var=framesize&val=15")
        self.assertEqual(code, 200, body)
        st = self.status()
        self.assertEqual((st["framesize"], st["width"], st["height"]), (15, 1600, 1200))
        self.assertEqual(get(self.fw, "/capture")[0], 200)
        r.close()
        r.join(2)
        for _, part in r.parts:
            self.assertTrue(untorn(part))


class TestStartWithoutRoom(unittest.TestCase):
    def test_status_says_what_to_set(self):
        toml = 'CAMSERVER_PORT = %d\nCIRCUITPY_WIFI_SSID = "camnet"\nCAMSERVER_FRAME_SIZE = "QSXGA"' % free_port()
        b = Boot(TIGHT, toml)
        self.addCleanup(b.stop)
        st = json.loads(get(b, "/status")[2])
        self.assertEqual(st["camera"], "error")
        for text in ("QSXGA", "largest free block", "CAMSERVER_FRAME_SIZE", "CAMSERVER_FB_COUNT = 1"):
            self.assertIn(text, st["error"])
        self.assertNotIn("wiring", st["error"])
        self.assertIn("CAMSERVER_FB_COUNT = 1", b.console.getvalue())
        self.assertEqual(get(b, "/capture")[0], 503)
        self.assertEqual(get(b, "/health")[0], 200)
        self.assertIsNone(espcamera.live_camera)
        self.assertFalse({33, 34} & microcontroller._held(), "no bus made for a camera that cannot start")

    def test_failed_allocation_hints_at_memory(self):
        """Where camserver cannot ask espidf, the driver's ESP_FAIL
        (IDFError, as on the board) still gets the memory hint."""
        saved, camserver_camera.espidf = camserver_camera.espidf, None
        self.addCleanup(setattr, camserver_camera, "espidf", saved)
        fw = Firmware(board=TIGHT, size="QSXGA")
        self.addCleanup(fw.stop)
        err = fw.app.camera.error
        self.assertIn("IDFError: Generic Failure", err)
        self.assertIn("CAMSERVER_FRAME_SIZE", err)


if __name__ == "__main__":
    unittest.main()
