"""code.py boots on every supported board, on a hand-wired board from
settings.toml alone, and on a board it does not know; the board shims are
as strict as the boards."""

import json
import os
import time
import unittest

from harness import Boot, free_port, get, read_response  # first: it puts the shims on sys.path
from test_server import untorn
import busio  # shim
import espcamera  # shim
import microcontroller  # shim
import shimboards  # shim
import socketpool  # shim
import wifi  # shim

from camserver import boards


def settings(**kv):
    kv.setdefault("CAMSERVER_PORT", free_port())
    kv.setdefault("CIRCUITPY_WIFI_SSID", "camnet")  # CircuitPython connects at boot
    return "\n".join("%s = %s" % (k, '"%s"' % v if isinstance(v, str) else v) for k, v in kv.items()
                     if v is not None)  # None: leave the key out


# The founding blog post's robot: a camera wired by hand to a board whose
# module has only IOnn names, running the 8.0 betas' esp32_camera.
ROBOT = dict(
    CAMSERVER_PIN_SCL="IO35", CAMSERVER_PIN_SDA="IO33",
    CAMSERVER_PIN_DATA="IO21,IO17,IO16,IO18,IO37,IO34,IO36,IO39",
    CAMSERVER_PIN_PCLK="IO12", CAMSERVER_PIN_VSYNC="IO40", CAMSERVER_PIN_HREF="IO38",
)
ROBOT_BOARD = "espressif_saola_1_wrover"


class BootTest(unittest.TestCase):
    def boot(self, board_id, toml, **kw):
        b = Boot(board_id, toml, **kw)
        self.addCleanup(b.stop)
        return b

    def status(self, b):
        code, _, body = get(b, "/status")
        self.assertEqual(code, 200)
        return json.loads(body)


class TestSupportedBoards(BootTest):
    def test_each_board_serves_captures(self):
        self.assertEqual(sorted(boards.BOARDS), sorted(b for b in shimboards.BOARDS if b != ROBOT_BOARD))
        for board_id in sorted(boards.BOARDS):
            with self.subTest(board=board_id):
                b = Boot(board_id, settings(CAMSERVER_FRAME_SIZE="QVGA"))
                try:
                    code, h, body = get(b, "/capture")
                    self.assertEqual(code, 200, body)
                    self.assertTrue(untorn(body))
                    st = self.status(b)
                    self.assertEqual((st["camera"], st["board"], st["error"]), ("ok", board_id, ""))
                    self.assertIn("camera %s on %s" % (shimboards.CAMERAS[board_id], board_id), b.console.getvalue())
                    # The camera holds the pins of its table, by the board's own names.
                    held = microcontroller._held()
                    names = boards.BOARDS[board_id]
                    data = getattr(b.app.camera.cam, "data_pins")
                    self.assertEqual(data, getattr(__import__("board"), names["data"]))
                    self.assertTrue(set(p.number for p in data) <= held)
                finally:
                    b.stop()
                self.assertIsNone(b.error)

    def test_bus_singleton_is_shared_with_user_code(self):
        """On boards whose camera bus is board.I2C() (or SSCB_I2C), the
        server uses that singleton, so the robot's own code can too."""
        b = self.boot("espressif_esp32s3_eye", settings())
        import board
        self.assertIs(board.I2C(), b.app.camera.cam.i2c)


class TestHandWiredRobot(BootTest):
    def test_settings_toml_alone(self):
        b = self.boot(ROBOT_BOARD, settings(CAMSERVER_FRAME_SIZE="QVGA", **ROBOT), hide=("espcamera",))
        self.assertEqual(b.app.camera.error, "")
        self.assertEqual(type(b.app.camera.cam).__module__, "espcamera")  # via esp32_camera
        import camserver.camera
        self.assertEqual(camserver.camera.espcamera.__name__, "esp32_camera")
        code, _, body = get(b, "/capture")
        self.assertEqual(code, 200)
        self.assertTrue(untorn(body))
        cam = b.app.camera.cam
        self.assertEqual([p.number for p in cam.data_pins], [21, 17, 16, 18, 37, 34, 36, 39])
        self.assertEqual((cam.pixel_clock_pin.number, cam.vsync_pin.number, cam.href_pin.number), (12, 40, 38))
        self.assertEqual((cam.i2c.scl.number, cam.i2c.sda.number), (35, 33))
        self.assertIsNone(cam.external_clock_pin)

    def test_a_name_the_board_lacks(self):
        b = self.boot(ROBOT_BOARD, settings(**dict(ROBOT, CAMSERVER_PIN_PCLK="GPIO12")))
        st = self.status(b)
        self.assertEqual(st["camera"], "error")
        self.assertIn("CAMSERVER_PIN_PCLK", st["error"])
        self.assertIn("'GPIO12'", st["error"])
        self.assertEqual(get(b, "/health")[0], 200)

    def test_a_missing_pin(self):
        toml = dict(ROBOT)
        del toml["CAMSERVER_PIN_HREF"]
        b = self.boot(ROBOT_BOARD, settings(**toml))
        self.assertIn("CAMSERVER_PIN_HREF", self.status(b)["error"])

    def test_half_an_i2c_bus(self):
        """SCL by hand replaces the board's bus singleton, so SDA is needed too."""
        b = self.boot("espressif_esp32s3_eye", settings(CAMSERVER_PIN_SCL="IO3"))
        self.assertIn("CAMSERVER_PIN_SDA", self.status(b)["error"])

    def test_override_one_pin_of_a_known_board(self):
        # A reworked ESP32-S3-EYE: XCLK moved to IO3.
        b = self.boot("espressif_esp32s3_eye", settings(CAMSERVER_PIN_XCLK="IO3"))
        self.assertEqual(b.app.camera.cam.external_clock_pin.number, 3)


class TestUnknownBoard(BootTest):
    def test_serves_health_and_status_and_says_what_to_set(self):
        b = self.boot(ROBOT_BOARD, settings())
        self.assertEqual(get(b, "/health")[0], 200)
        st = self.status(b)
        self.assertEqual((st["camera"], st["board"]), ("error", ROBOT_BOARD))
        for key in ("CAMSERVER_PIN_DATA", "CAMSERVER_PIN_PCLK", "CAMSERVER_PIN_VSYNC", "CAMSERVER_PIN_HREF",
                    "CAMSERVER_PIN_SCL", "CAMSERVER_PIN_SDA"):
            self.assertIn(key, st["error"])
            self.assertIn(key, b.console.getvalue())  # the serial console says the same
        code, _, body = get(b, "/capture")
        self.assertEqual(code, 503)
        self.assertIn(b"CAMSERVER_PIN_DATA", body)


class TestCameraStartFailures(BootTest):
    def test_one_failed_start_is_retried(self):
        """esp_camera_init fails now and then. The failed Camera keeps its
        pins until the collector finalises it, so the retry needs a
        gc.collect() first; then it works."""
        b = self.boot("ai-thinker-esp32-cam", settings(), init_failures=1)
        self.assertEqual(b.app.camera.error, "")
        self.assertEqual(get(b, "/capture")[0], 200)

    def test_camera_that_never_starts(self):
        b = self.boot("seeed_xiao_esp32_s3_sense", settings(), init_failures=100)
        self.assertEqual(get(b, "/health")[0], 200)
        st = self.status(b)
        self.assertEqual(st["camera"], "error")
        self.assertIn("IDFError", st["error"])
        self.assertIn("CAMSERVER_PIN_", st["error"])
        self.assertIn("IDFError", b.console.getvalue())
        self.assertEqual(get(b, "/capture")[0], 503)
        # Our own I2C bus was given back, for the user's code.
        self.assertFalse({39, 40} & microcontroller._held())

    def test_pin_already_in_use(self):
        """A pin held by something else is a wiring/settings mistake, not a
        flaky start: reported as the board reports it, not retried."""
        b = self.boot(ROBOT_BOARD, settings(**dict(ROBOT, CAMSERVER_PIN_SDA="IO21")))  # IO21 is D0 too
        err = self.status(b)["error"]
        self.assertIn("GPIO21 in use", err)
        self.assertIn("CAMSERVER_PIN_", err)

    def test_bad_settings_do_not_stop_the_board(self):
        b = self.boot("ai-thinker-esp32-cam", settings(CAMSERVER_FRAME_SIZE="HUGE", CAMSERVER_MAX_CLIENTS=99))
        st = self.status(b)
        self.assertEqual(st["camera"], "ok")
        self.assertIn("CAMSERVER_FRAME_SIZE", st["settings_error"])
        self.assertIn("CAMSERVER_MAX_CLIENTS", st["settings_error"])
        self.assertIn("CAMSERVER_FRAME_SIZE", b.console.getvalue())


class TestWifiSettings(BootTest):
    def test_no_ssid_says_what_to_set(self):
        """Without CIRCUITPY_WIFI_SSID the board is not connected at boot,
        and connect(None) is a TypeError on the board: code.py says what
        to set instead of retrying that. Once it is set, it connects."""
        b = Boot("ai-thinker-esp32-cam", settings(CIRCUITPY_WIFI_SSID=None), wait=False)
        self.addCleanup(b.stop)
        deadline = time.time() + 5
        while "CIRCUITPY_WIFI_SSID" not in b.console.getvalue() and time.time() < deadline:
            time.sleep(0.05)
        out = b.console.getvalue()
        self.assertIn('set CIRCUITPY_WIFI_SSID = "your-network"', out)
        self.assertIn("CIRCUITPY_WIFI_PASSWORD", out)
        self.assertNotIn("buffer protocol", out)
        b.env["CIRCUITPY_WIFI_SSID"] = "camnet"  # as if settings.toml were saved
        b.wait(15)
        self.assertTrue(wifi.radio.connected)
        self.assertEqual(get(b, "/health")[0], 200)

    def test_shim_rejects_what_the_board_rejects(self):
        radio = wifi._Radio()
        with self.assertRaisesRegex(TypeError, "buffer protocol"):
            radio.connect(None)
        with self.assertRaisesRegex(ValueError, "ssid length"):
            radio.connect("")
        with self.assertRaisesRegex(ValueError, "password length"):
            radio.connect("camnet", "short")
        with self.assertRaises(TypeError):
            radio.connect("camnet", "password", 6)  # channel is keyword-only
        radio.connect("camnet", None)
        radio.connect(b"camnet", "password", timeout=10)


class TestWebWorkflowSockets(BootTest):
    """With CIRCUITPY_WEB_API_PASSWORD set, CircuitPython's web workflow
    holds up to 3 of lwIP's 8 sockets. camserver takes fewer clients, so
    that it still has a socket to accept a newcomer with and make room."""

    def test_max_clients_fits_what_the_web_workflow_leaves(self):
        b = self.boot("ai-thinker-esp32-cam", settings(CIRCUITPY_WEB_API_PASSWORD="secret"))
        self.assertEqual(socketpool.web_workflow_sockets(), 3)
        st = self.status(b)
        self.assertEqual(st["max_clients"], 3)
        self.assertIn("web workflow", st["settings_note"])
        self.assertIn("max_clients is 3", b.console.getvalue())
        idle = []
        for _ in range(3):  # every slot taken by an idle keep-alive connection
            c = b.connect()
            c.sendall(b"GET /health HTTP/1.1\r\nHost: cam\r\n\r\n")
            self.assertEqual(read_response(c)[0], 200)
            idle.append(c)
            time.sleep(0.02)
        try:
            code, _, body = get(b, "/status")  # the newcomer is accepted: an idle one makes room
            self.assertEqual(code, 200)
            self.assertGreaterEqual(json.loads(body)["evicted"], 1)
        finally:
            for c in idle:
                c.close()

    def test_shim_counts_the_web_workflows_sockets(self):
        pool = socketpool.SocketPool(None)
        env = {"CIRCUITPY_WIFI_SSID": "camnet", "CIRCUITPY_WEB_API_PASSWORD": "secret"}
        getenv, os.getenv = os.getenv, lambda k, default=None: env.get(k, default)
        held = []
        try:
            free = socketpool.MAX_SOCKETS - socketpool.WEB_WORKFLOW_SOCKETS - socketpool.open_count()
            for _ in range(free):
                held.append(pool.socket())
            with self.assertRaisesRegex(RuntimeError, "Out of sockets"):
                pool.socket()
        finally:
            os.getenv = getenv
            for s in held:
                s.close()

    def test_without_it_the_defaults_stand(self):
        b = self.boot("ai-thinker-esp32-cam", settings())
        st = self.status(b)
        self.assertEqual((st["max_clients"], st["settings_note"]), (4, ""))


class TestShimsAreStrict(unittest.TestCase):
    """What the real boards refuse, the shims refuse: a test passing on
    them must not depend on a name or a pin the board does not have."""

    def test_only_the_boards_own_names(self):
        b = shimboards.use("seeed_xiao_esp32_s3_sense")
        for name in ("CAMERA_DATA", "CAMERA_PCLK", "CAMERA_SIOC", "SSCB_I2C", "FLASHLIGHT"):
            self.assertFalse(hasattr(b, name), name)
        self.assertTrue(hasattr(b, "CAM_DATA"))
        b = shimboards.use("ai-thinker-esp32-cam")
        self.assertFalse(hasattr(b, "CAMERA_RESET"))  # NULL in pins.c
        b = shimboards.use(ROBOT_BOARD)
        self.assertFalse(hasattr(b, "I2C"))
        self.assertEqual(sorted(n for n in dir(b) if not n.startswith("__")),
                         sorted(["board_id"] + list(shimboards.BOARDS[ROBOT_BOARD]["pins"])))

    def test_pins_belong_to_one_driver(self):
        b = shimboards.use("ai-thinker-esp32-cam")
        bus = b.I2C()
        self.assertIs(b.I2C(), bus)
        with self.assertRaisesRegex(ValueError, "GPIO27 in use"):
            busio.I2C(b.CAMERA_SIOC, b.CAMERA_SIOD)  # the same pins as board.I2C()
        bus.deinit()
        busio.I2C(b.CAMERA_SIOC, b.CAMERA_SIOD).deinit()

    def test_camera_argument_checks(self):
        b = shimboards.use("ai-thinker-esp32-cam")
        espcamera.live_camera = None
        good = dict(data_pins=b.CAMERA_DATA, pixel_clock_pin=b.CAMERA_PCLK, vsync_pin=b.CAMERA_VSYNC,
                    href_pin=b.CAMERA_HREF, external_clock_pin=b.CAMERA_XCLK)
        with self.assertRaises(TypeError):
            espcamera.Camera(i2c=(b.CAMERA_SIOC, b.CAMERA_SIOD), **good)  # not a busio.I2C
        with self.assertRaises(TypeError):
            espcamera.Camera(b.CAMERA_DATA, i2c=b.I2C())  # keyword-only
        with self.assertRaisesRegex(ValueError, "length"):
            espcamera.Camera(**dict(good, data_pins=b.CAMERA_DATA[:7], i2c=b.I2C()))
        with self.assertRaises(TypeError):
            espcamera.Camera(**dict(good, frame_size="VGA", i2c=b.I2C()))
        import pwmio
        led = pwmio.PWMOut(b.CAMERA_PCLK)
        with self.assertRaisesRegex(ValueError, "GPIO22 in use"):
            espcamera.Camera(i2c=b.I2C(), **good)
        led.deinit()
        with self.assertRaisesRegex(ValueError, "Invalid"):
            busio.I2C(b.CAMERA_DATA9, b.CAMERA_DATA8)  # GPIO35/34 are input-only on an ESP32
        cam = espcamera.Camera(i2c=b.I2C(), **good)
        with self.assertRaisesRegex(ValueError, "in use"):
            busio.I2C(b.CAMERA_PCLK, b.CAMERA_VSYNC)
        cam.deinit()

    def test_failed_start_keeps_pins_until_collected(self):
        import gc
        b = shimboards.use("espressif_esp32s3_eye")
        espcamera.live_camera = None
        espcamera.INIT_FAILURES = 1
        kw = dict(data_pins=b.CAMERA_DATA, pixel_clock_pin=b.CAMERA_PCLK, vsync_pin=b.CAMERA_VSYNC,
                  href_pin=b.CAMERA_HREF, i2c=b.I2C())
        with self.assertRaises(OSError):
            espcamera.Camera(**kw)
        with self.assertRaisesRegex(ValueError, "in use"):
            espcamera.Camera(**kw)
        gc.collect()
        espcamera.Camera(**kw).deinit()


if __name__ == "__main__":
    unittest.main()
