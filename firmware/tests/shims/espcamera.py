"""Host stand-in for CircuitPython's espcamera (see README.md).

The synthetic sensor captures at FPS frames per second. take() returns a
memoryview into one reused buffer that the next take() overwrites, like the
driver's frame buffer. Tests script timeouts with `fail_takes` and setter
failures with `reject`.
"""

import os
import time

FPS = 30.0  # set by hostsim/tests before constructing a Camera

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
MAX_FRAME_SIZE = "UXGA"  # the OV2640's largest


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


class Camera:
    def __init__(self, *, data_pins, pixel_clock_pin, vsync_pin, href_pin, i2c, external_clock_pin=None,
                 external_clock_frequency=20000000, powerdown_pin=None, reset_pin=None,
                 pixel_format=PixelFormat.RGB565, frame_size=FrameSize.QQVGA, jpeg_quality=15,
                 framebuffer_count=1, grab_mode=GrabMode.WHEN_EMPTY):
        global live_camera
        if len(data_pins) != 8:
            raise ValueError("data_pins must have 8 pins")
        if not 0 <= external_clock_frequency <= 40000000:
            raise ValueError("external_clock_frequency out of range")
        if not 2 <= jpeg_quality <= 55:
            raise ValueError("jpeg_quality must be 2-55")
        if not 1 <= framebuffer_count <= 2:
            raise ValueError("framebuffer_count must be 1-2")
        if live_camera is not None:
            raise RuntimeError("only one camera")
        self.pixel_format = pixel_format
        self.grab_mode = grab_mode
        self.framebuffer_count = framebuffer_count
        self.sensor_name = "OV2640"
        self.supports_jpeg = True
        self._props = dict((p, 0) for p in _INT_PROPS)
        self._props.update((p, False) for p in _BOOL_PROPS)
        self._props["quality"] = jpeg_quality
        self._props["gain_ceiling"] = GainCeiling.GAIN_2X
        self._set_size(frame_size)
        self._buf = bytearray(256 * 1024)  # the driver's frame buffer
        self._n = 0
        self._next = time.monotonic()
        self.fail_takes = 0  # scripted: the next N takes time out
        self.reject = set()  # scripted: setters of these names fail
        self.deinited = False
        live_camera = self

    def _set_size(self, fs):
        self.frame_size = fs
        w, h = _DIMS[fs.name]
        dims = min(_FRAMES, key=lambda d: abs(d[0] * d[1] - w * h))
        self.width, self.height = w, h
        self._frames = _FRAMES[dims]

    @property
    def max_frame_size(self):
        return getattr(FrameSize, MAX_FRAME_SIZE)

    @property
    def frame_available(self):
        return time.monotonic() >= self._next

    def take(self, timeout=0.25):
        """Blocks the whole VM (like the real driver) for up to timeout."""
        if self.deinited:
            raise ValueError("Object has been deinitialized")
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
        jpg = self._frames[self._n % len(self._frames)]
        # A COM segment with the frame number makes each frame unique.
        com = b"frame %d" % self._n
        data = jpg[:2] + b"\xff\xfe" + (len(com) + 2).to_bytes(2, "big") + com + jpg[2:]
        self._buf[:len(data)] = data  # overwrites what the last take() returned
        return memoryview(self._buf)[:len(data)]

    def reconfigure(self, frame_size=None, pixel_format=None, grab_mode=None, framebuffer_count=None):
        time.sleep(0.05)  # deinit + init: slow, and it blocks
        if frame_size is not None:
            if frame_size.value > self.max_frame_size.value:
                frame_size = self.max_frame_size
            self._set_size(frame_size)

    def deinit(self):
        global live_camera
        self.deinited = True
        live_camera = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.deinit()


def _prop(name):
    def get(self):
        return self._props[name]

    def set(self, value):
        if name in self.reject:
            raise ValueError("invalid setting")
        lo_hi = _RANGES.get(name)
        if lo_hi and not lo_hi[0] <= value <= lo_hi[1]:
            raise ValueError("invalid setting")
        self._props[name] = value
    return property(get, set)


for _n in _INT_PROPS + _BOOL_PROPS + ("gain_ceiling",):
    setattr(Camera, _n, _prop(_n))
