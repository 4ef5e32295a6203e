"""Host stand-in for CircuitPython's espcamera (see README.md).

The constructor checks its arguments the way
ports/espressif/bindings/espcamera/Camera.c does (keyword-only; 8 free data
pins; free control pins; `i2c` a busio.I2C; quality 2..55; 1..2 buffers;
enum values of the right type) and claims every pin before starting the
sensor, as common-hal/espcamera/Camera.c does. When the start fails
(INIT_FAILURES, or a second camera) it raises espidf.IDFError with the pins
still claimed: on the board they come back only when the garbage collector
finalises the half-made object, so here they come back at gc.collect().

The synthetic sensor captures at FPS frames per second. take() returns a
memoryview into one reused buffer that the next take() overwrites, like the
driver's frame buffer. Each frame is a real JPEG from tests/testdata with a
COM segment "frame N" after SOI, and, with PAD_TO set, filler COM segments
(every byte N % 251) up to about PAD_TO bytes, so big frames are cheap and a
torn frame shows. Tests script timeouts with `fail_takes` and setter
failures with `reject`.
"""

import ctypes
import errno
import gc
import os
import time

import busio
import espidf
import microcontroller

FPS = 30.0        # set by hostsim/tests before constructing a Camera
PAD_TO = 0        # pad frames to about this many bytes (0: no padding)
INIT_FAILURES = 0  # the next N constructions fail in esp_camera_init
SENSOR = "OV2640"
MAX_FRAME_SIZE = "UXGA"  # the OV2640's largest

_TESTDATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "testdata")


class _Enum:
    def __init__(self, cls, name, value):
        self.cls, self.name, self.value = cls, name, value

    def __repr__(self):
        return "%s.%s" % (self.cls, self.name)


def _enum(clsname, names):
    ns = {}
    for i, n in enumerate(names):
        ns[n] = _Enum(clsname, n, i)
    return type(clsname, (), ns)


def _check_enum(value, cls, arg):
    if not (isinstance(value, _Enum) and value.cls == cls.__name__):
        raise TypeError("%s must be of type %s, not %s" % (arg, cls.__name__, type(value).__name__))


PixelFormat = _enum("PixelFormat", ["RGB565", "GRAYSCALE", "JPEG"])
GrabMode = _enum("GrabMode", ["WHEN_EMPTY", "LATEST"])
GainCeiling = _enum("GainCeiling", ["GAIN_2X", "GAIN_4X", "GAIN_8X", "GAIN_16X", "GAIN_32X", "GAIN_64X", "GAIN_128X"])
_SIZES = [
    ("R96X96", 96, 96), ("QQVGA", 160, 120), ("QCIF", 176, 144), ("HQVGA", 240, 176), ("R240X240", 240, 240),
    ("QVGA", 320, 240), ("CIF", 400, 296), ("HVGA", 480, 320), ("VGA", 640, 480), ("SVGA", 800, 600),
    ("XGA", 1024, 768), ("HD", 1280, 720), ("SXGA", 1280, 1024), ("UXGA", 1600, 1200),
    ("FHD", 1920, 1080), ("P_HD", 720, 1280), ("P_3MP", 864, 1536), ("QXGA", 2048, 1536),
    ("QHD", 2560, 1440), ("WQXGA", 2560, 1600), ("P_FHD", 1080, 1920), ("QSXGA", 2560, 1920),
]
FrameSize = _enum("FrameSize", [s[0] for s in _SIZES])
_DIMS = dict((s[0], (s[1], s[2])) for s in _SIZES)


def _load_frames():
    frames = {}
    for name in sorted(os.listdir(_TESTDATA)):
        if name.startswith("frame-") and name.endswith(".jpg"):
            dims = tuple(int(x) for x in name.split("-")[1].split("x"))
            with open(os.path.join(_TESTDATA, name), "rb") as f:
                frames.setdefault(dims, []).append(f.read())
    return frames


_FRAMES = _load_frames()

_INT_PROPS = ("contrast", "brightness", "saturation", "sharpness", "denoise", "quality", "agc_gain",
              "aec_value", "special_effect", "wb_mode", "ae_level")
_BOOL_PROPS = ("colorbar", "whitebal", "gain_ctrl", "exposure_ctrl", "hmirror", "vflip", "aec2", "awb_gain",
               "dcw", "bpc", "wpc", "raw_gma", "lenc")
_RANGES = {"contrast": (-2, 2), "brightness": (-2, 2), "saturation": (-2, 2), "sharpness": (-2, 2),
           "quality": (2, 63), "agc_gain": (0, 30), "aec_value": (0, 1200), "special_effect": (0, 6),
           "wb_mode": (0, 4), "ae_level": (-2, 2), "denoise": (0, 8)}

live_camera = None
_unreachable = []  # cameras whose start failed: pins held until gc.collect()


def _finalise(phase, info):
    # A full collection (gc.collect()) finalises the failed cameras, which
    # gives their pins back.
    if phase == "stop" and info.get("generation") == 2:
        while _unreachable:
            _unreachable.pop().deinit()


gc.callbacks.append(_finalise)


class Camera:
    def __init__(self, *, data_pins, pixel_clock_pin, vsync_pin, href_pin, i2c, external_clock_pin=None,
                 external_clock_frequency=20000000, powerdown_pin=None, reset_pin=None,
                 pixel_format=PixelFormat.RGB565, frame_size=FrameSize.QQVGA, jpeg_quality=15,
                 framebuffer_count=1, grab_mode=GrabMode.WHEN_EMPTY):
        global live_camera
        self._pins = []
        self.deinited = True  # until the pins are claimed
        data_pins = tuple(data_pins)
        if len(data_pins) > 8:
            raise ValueError("data_pins length must be <= 8")
        for p in data_pins:
            microcontroller._check(p, "data_pins")
        if len(data_pins) != 8:
            raise ValueError("data_pins length must be 8")
        microcontroller._check(pixel_clock_pin, "pixel_clock_pin")
        microcontroller._check(vsync_pin, "vsync_pin")
        microcontroller._check(href_pin, "href_pin")
        if not isinstance(i2c, busio.I2C):
            raise TypeError("i2c must be of type I2C, not %s" % type(i2c).__name__)
        for p, arg in ((external_clock_pin, "external_clock_pin"), (powerdown_pin, "powerdown_pin"),
                       (reset_pin, "reset_pin")):
            if p is not None:
                microcontroller._check(p, arg)
        if not 0 <= external_clock_frequency <= 40000000:
            raise ValueError("external_clock_frequency must be 0-40000000")
        _check_enum(grab_mode, GrabMode, "grab_mode")
        _check_enum(frame_size, FrameSize, "frame_size")
        _check_enum(pixel_format, PixelFormat, "pixel_format")
        if not 2 <= jpeg_quality <= 55:
            raise ValueError("jpeg_quality must be 2-55")
        if not 1 <= framebuffer_count <= 2:
            raise ValueError("framebuffer_count must be 1-2")
        if external_clock_pin is not None:
            microcontroller._check_output(external_clock_pin, "external_clock_pin")

        # common_hal_espcamera_camera_construct: claim, then start.
        for p in data_pins + (external_clock_pin, pixel_clock_pin, vsync_pin, href_pin, powerdown_pin, reset_pin):
            if p is not None:
                microcontroller._claim(p, self)
                self._pins.append(p)
        self.deinited = False
        self.i2c = i2c
        self.data_pins = data_pins
        self.pixel_clock_pin, self.vsync_pin, self.href_pin = pixel_clock_pin, vsync_pin, href_pin
        self.external_clock_pin, self.powerdown_pin, self.reset_pin = external_clock_pin, powerdown_pin, reset_pin
        global INIT_FAILURES
        if i2c.deinited():
            _unreachable.append(self)
            raise ValueError("Object has been deinitialized and can no longer be used. Create a new object.")
        if INIT_FAILURES > 0 or live_camera is not None:
            # esp_camera_init failed (0x20002: the sensor did not answer on
            # I2C), or the driver already runs a camera.
            if INIT_FAILURES > 0:
                INIT_FAILURES -= 1
            _unreachable.append(self)
            raise espidf.IDFError("Requested resource not found" if live_camera is None else "Invalid state")

        self.pixel_format = pixel_format
        self.grab_mode = grab_mode
        self.framebuffer_count = framebuffer_count
        self.sensor_name = SENSOR
        self.supports_jpeg = True
        self._props = dict((p, 0) for p in _INT_PROPS)
        self._props.update((p, False) for p in _BOOL_PROPS)
        self._props["quality"] = jpeg_quality
        self._props["gain_ceiling"] = GainCeiling.GAIN_2X
        self._set_size(frame_size)
        self._buf = bytearray(256 * 1024)  # the driver's frame buffer
        self._addr = ctypes.addressof((ctypes.c_char * len(self._buf)).from_buffer(self._buf))
        self._n = 0
        self._next = time.monotonic()
        self.fail_takes = 0  # scripted: the next N takes time out
        self.reject = set()  # scripted: setters of these names fail
        self.reconfigures = 0
        live_camera = self

    def _set_size(self, fs):
        self.frame_size = fs
        w, h = _DIMS[fs.name]
        dims = min(_FRAMES, key=lambda d: abs(d[0] * d[1] - w * h))
        self.width, self.height = w, h
        self._frames = _FRAMES[dims]

    def _check_deinit(self):
        if self.deinited:
            raise ValueError("Object has been deinitialized and can no longer be used. Create a new object.")

    def _i2c_lock(self):
        # Getters and setters talk to the sensor over the shared bus.
        self._check_deinit()
        self.i2c._check()
        if not self.i2c.try_lock():
            raise OSError(errno.EAGAIN, "bus busy")
        self.i2c.unlock()

    @property
    def max_frame_size(self):
        return getattr(FrameSize, MAX_FRAME_SIZE)

    @property
    def frame_available(self):
        self._check_deinit()
        return time.monotonic() >= self._next

    def take(self, timeout=0.25):
        """Blocks the whole VM (like the real driver) for up to timeout."""
        self._check_deinit()
        if self.fail_takes > 0:
            self.fail_takes -= 1
            time.sleep(timeout)
            return None
        wait = self._next - time.monotonic()
        if wait > timeout:
            time.sleep(timeout)
            return None
        if wait > 0:
            time.sleep(wait)
        self._next = max(self._next + 1.0 / FPS, time.monotonic())
        self._n += 1
        return self._render(self._n)

    def _render(self, n):
        """Frame n, written straight into the driver buffer: like the DMA,
        making a frame takes no memory from the heap (which matters when
        tests give the firmware a small one)."""
        jpg = self._frames[n % len(self._frames)]
        com = b"frame %d" % n
        buf, at = self._buf, 0

        def put(b):
            nonlocal at
            buf[at:at + len(b)] = b
            at += len(b)
        put(jpg[:2])
        put(b"\xff\xfe")
        put((len(com) + 2).to_bytes(2, "big"))
        put(com)
        pad = PAD_TO - len(jpg) - len(com) - 4
        while pad > 4:
            k = min(pad - 4, 65533)
            put(b"\xff\xfe")
            put((k + 2).to_bytes(2, "big"))
            ctypes.memset(self._addr + at, n % 251, k)  # filler: every byte n % 251
            at += k
            pad -= k + 4
        put(memoryview(jpg)[2:])
        return memoryview(buf)[:at]  # overwritten by the next take()

    def reconfigure(self, frame_size=None, pixel_format=None, grab_mode=None, framebuffer_count=None):
        self._check_deinit()
        if frame_size is not None:
            _check_enum(frame_size, FrameSize, "frame_size")
        self._i2c_lock()
        try:  # for tests: which task did it
            import asyncio
            self.reconfigured_in = asyncio.current_task()
        except RuntimeError:
            self.reconfigured_in = None
        time.sleep(0.05)  # deinit + init: slow, and it blocks
        self.reconfigures += 1
        if frame_size is not None:
            if frame_size.value > self.max_frame_size.value:
                frame_size = self.max_frame_size
            self._set_size(frame_size)

    def deinit(self):
        global live_camera
        if self.deinited:
            return
        self.deinited = True
        for p in self._pins:
            microcontroller._release(p)
        if live_camera is self:
            live_camera = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.deinit()


def _prop(name):
    def get(self):
        self._i2c_lock()
        return self._props[name]

    def set(self, value):
        self._i2c_lock()
        if name in self.reject:
            raise ValueError("invalid setting")
        lo_hi = _RANGES.get(name)
        if lo_hi and not lo_hi[0] <= value <= lo_hi[1]:
            raise ValueError("invalid setting")
        self._props[name] = value
    return property(get, set)


for _n in _INT_PROPS + _BOOL_PROPS + ("gain_ceiling",):
    setattr(Camera, _n, _prop(_n))
