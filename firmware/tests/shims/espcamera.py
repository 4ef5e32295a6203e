"""Host stand-in for CircuitPython's espcamera (see README.md).

The constructor checks its arguments the way
ports/espressif/bindings/espcamera/Camera.c does (keyword-only; 8 free data
pins; free control pins; `i2c` a busio.I2C; quality 2..55; 1..2 buffers;
enum values of the right type) and claims every pin before starting the
sensor, as common-hal/espcamera/Camera.c does. When the start fails
(INIT_FAILURES, or a second camera) it raises espidf.IDFError with the pins
still claimed: on the board they come back only when the garbage collector
finalises the half-made object, so here they come back at gc.collect().

The synthetic sensor starts a frame every 1/FPS s (a VSYNC), and the
driver is modelled as esp32-camera's cam_hal.c runs it (adafruit/esp32-camera,
the branch CircuitPython builds): `framebuffer_count` buffers, each free or
not; at a VSYNC the frame being captured is finished and queued, and the
next one starts only if a buffer is free. The queue holds fb_count frames,
fb_count - 1 with GrabMode.LATEST and 2 buffers; a finished frame finding it
full replaces the queued one, which frees that one's buffer. take() is
common_hal_espcamera_camera_take: it first gives back the buffer the last
take() returned (CircuitPython holds it until then: `buffer_to_return`), then
takes the oldest queued frame, waiting up to `timeout`. So with one buffer the
driver captures nothing more until the next take(); with two and LATEST, a
frame that sits in the queue while CircuitPython holds the other buffer is
not replaced: after an idle spell it is old. `frame_available` only looks at
the queue. A take() that finds the queue empty resets the DMA (as on an
ESP32-S3; here on every chip): a frame being captured then is lost
(`dma_resets` counts them). reconfigure() frees and reallocates the buffers
but, like CircuitPython, keeps `buffer_to_return`: the next take() gives that
freed address back, which may be a new buffer's, and the shim assumes the
worst, the queued one: that take() returns a frame the driver may be
overwriting. A frame returned from a buffer the driver may write into is torn
(its second half zeroed), and a buffer given back is scribbled over at once,
so reading a frame after the next take() shows.

The sensor is the board's camera module (shimboards.CAMERAS: name, and
its largest frame size from esp32-camera's sensor.c), unless SENSOR says
otherwise.

Memory: esp32-camera allocates `framebuffer_count` frame buffers in PSRAM
(cam_hal.c cam_config: width * height / 5 bytes each for JPEG), through
the espidf shim's budget for the booted board. At construction a buffer
that does not fit fails esp_camera_init with ESP_FAIL: espidf.IDFError
("Generic Failure"), not a MemoryError, pins held as above. reconfigure()
is CircuitPython's common_hal_espcamera_camera_reconfigure: cam_deinit()
frees the buffers, then cam_init(); cam_config() allocates the new ones,
and nobody checks what they return. When they do not fit, cam_config's
error path frees the driver's cam_obj (NULL), reconfigure() returns as if
all were well, and the next take() or frame_available dereferences NULL:
the board hard-faults and restarts in safe mode. Here that is HardFault, a
BaseException that no `except Exception` swallows; `hard_fault` keeps its
message for the test harness, which fails the test. (A later reconfigure()
whose buffers fit makes a new cam_obj, as on the board.)

Each frame is a real JPEG from tests/testdata with a COM segment
"frame N at T" after SOI (N the sensor's frame number, T the time.monotonic()
its capture started), and, with PAD_TO set, filler COM segments (every byte
N % 251) up to about PAD_TO bytes, so big frames are cheap and a torn frame
shows. Tests script timeouts with `fail_takes` and setter failures with
`reject`.
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
SENSOR = None     # None: the booted board's camera (shimboards.CAMERAS)
# esp32-camera's driver/sensor.c camera_sensor[]: each sensor's largest size.
SENSORS = {"OV2640": "UXGA", "OV3660": "QXGA", "OV5640": "QSXGA"}
BUF_SIZE = 256 * 1024  # host memory behind one driver buffer (frames are small here)
hard_fault = None  # why the board would have hard-faulted, once it would have


class HardFault(BaseException):
    """The board would hard-fault here (and restart in safe mode)."""

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


def _fb_bytes(fs, pixel_format, count):
    """What cam_config allocates in PSRAM for count buffers of size fs."""
    w, h = _DIMS[fs.name]
    per_pixel = {"JPEG": None, "RGB565": 2, "GRAYSCALE": 1}[pixel_format.name]
    return count * (w * h // 5 if per_pixel is None else w * h * per_pixel)


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
_FREED = "freed"  # buffer_to_return after reconfigure(): a freed buffer's address
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

        import board
        import shimboards
        self.sensor_name = SENSOR or shimboards.CAMERAS.get(board.board_id, "OV2640")
        requested = frame_size
        if frame_size.value > self.max_frame_size.value:  # esp_camera_init clamps
            frame_size = self.max_frame_size
        # cam_config: the frame buffers, in PSRAM. Its failure is ESP_FAIL.
        need = _fb_bytes(frame_size, pixel_format, framebuffer_count)
        if not espidf._alloc(need):  # cam_config's error path freed what it had
            _unreachable.append(self)
            raise espidf.IDFError("Generic Failure")
        self._psram = need
        self._broken = None  # why cam_obj is NULL (reconfigure failed), or None
        self.pixel_format = pixel_format
        self.grab_mode = grab_mode
        self.framebuffer_count = framebuffer_count
        self.supports_jpeg = True
        self._props = dict((p, 0) for p in _INT_PROPS)
        self._props.update((p, False) for p in _BOOL_PROPS)
        self._props["quality"] = jpeg_quality
        self._props["gain_ceiling"] = GainCeiling.GAIN_2X
        self._set_size(frame_size)
        self.frame_size = requested  # camera_config.frame_size: not clamped
        self._period = 1.0 / FPS
        self._t0 = time.monotonic()  # VSYNC k is at _t0 + k * _period
        self._bufs = []
        self._held = None            # buffer_to_return: a buffer, _FREED or None
        self._start(framebuffer_count)
        self.fail_takes = 0  # scripted: the next N takes time out
        self.reject = set()  # scripted: setters of these names fail
        self.reconfigures = 0
        self.dma_resets = 0  # frames lost to a take() on an empty queue
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
        return getattr(FrameSize, SENSORS[self.sensor_name])

    def _cam_obj(self, what):
        """The driver's cam_obj, which take() and frame_available use."""
        global hard_fault
        if self._broken is not None:
            msg = "board would hard-fault: %s after %s" % (what, self._broken)
            if hard_fault is None:
                hard_fault = msg
            raise HardFault(msg)

    def _start(self, count):
        """cam_config: count buffers, every one free, an empty queue, and
        the driver idle until the next VSYNC. The shim reuses its buffers'
        memory: like the driver's (PSRAM), it is not the VM's heap."""
        while len(self._bufs) < count:
            b = bytearray(BUF_SIZE)
            self._bufs.append((b, ctypes.addressof((ctypes.c_char * len(b)).from_buffer(b))))
        del self._bufs[count:]
        self._free = [True] * count   # frames[x].en
        self._shot = [None] * count   # (frame number, capture start) in each buffer
        self._len = [0] * count
        latest = self.grab_mode.name == "LATEST" and count > 1
        self._qlen = count - 1 if latest else count
        self._queue = []              # finished frames (buffer numbers), oldest first
        self._filling = None          # the buffer being captured into; None: idle
        self._pos = 0                 # cam_task's frame_pos
        self._k = int((time.monotonic() - self._t0) / self._period) + 1

    def _run_until(self, now):
        """cam_task, VSYNC by VSYNC, up to now. Without a take() in between
        the state settles within 4 VSYNCs (idle, or alternating between
        two buffers), so a long gap is cut short after them: only frame
        numbers are skipped."""
        last = int((now - self._t0) / self._period)
        settled = self._k + 4
        while self._k <= last:
            if self._k == settled and last - self._k > 4:
                self._k = last - 4
            if self._filling is not None:  # the frame is done: queue it
                x, self._filling = self._filling, None
                self._free[x] = False
                if len(self._queue) >= self._qlen:  # full: the new one replaces the oldest
                    self._free[self._queue.pop(0)] = True
                self._queue.append(x)
            if not self._free[self._pos]:  # cam_get_next_frame
                for i, free in enumerate(self._free):
                    if free:
                        self._pos = i
                        break
            if self._free[self._pos]:  # cam_start_frame: only into a free buffer
                self._filling = self._pos
                self._shot[self._pos] = (self._k, self._t0 + self._k * self._period)
            self._k += 1

    @property
    def capturing(self):
        """For tests: is a frame being captured now?"""
        self._cam_obj("capturing")
        self._run_until(time.monotonic())
        return self._filling is not None

    @property
    def frame_available(self):
        """cam_avail: is a finished frame queued?"""
        self._check_deinit()
        self._cam_obj("frame_available")
        self._run_until(time.monotonic())
        return bool(self._queue)

    def take(self, timeout=0.25):
        """common_hal_espcamera_camera_take. Blocks the whole VM (like the
        real driver) for up to timeout (twice: the retry after a DMA reset)."""
        self._check_deinit()
        self._cam_obj("take()")
        self._run_until(time.monotonic())
        x, self._held = self._held, None
        if x is _FREED:  # a freed buffer's address: assume the worst
            x = self._queue[0] if self._queue else None
        if x is not None:  # esp_camera_fb_return
            self._free[x] = True
            b, addr = self._bufs[x]
            ctypes.memset(addr, 0, self._len[x])  # the driver may overwrite it from now on
        if self.fail_takes > 0:
            self.fail_takes -= 1
            time.sleep(timeout)
            return None
        x = self._receive(timeout)
        if x is None:  # cam_take on an ESP32-S3: reset the DMA, wait again
            if self._filling is not None:
                self._filling = None
                self.dma_resets += 1
            x = self._receive(timeout)
        if x is None:
            return None
        self._held = x
        return self._render(x)

    def _receive(self, timeout):
        """xQueueReceive: the oldest queued frame, waiting up to timeout."""
        deadline = time.monotonic() + timeout
        while not self._queue:
            now = time.monotonic()
            if now >= deadline:
                return None
            time.sleep(max(0.0, min(deadline, self._t0 + self._k * self._period) - now) + 0.0005)
            self._run_until(time.monotonic())
        return self._queue.pop(0)

    def _render(self, x):
        """The frame in buffer x, written in place: like the DMA, making a
        frame takes no memory from the heap (which matters when tests give
        the firmware a small one)."""
        n, t = self._shot[x]
        jpg = self._frames[n % len(self._frames)]
        com = b"frame %d at %.6f" % (n, t)
        buf, addr = self._bufs[x]
        at = 0

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
            ctypes.memset(addr + at, n % 251, k)  # filler: every byte n % 251
            at += k
            pad -= k + 4
        put(memoryview(jpg)[2:])
        self._len[x] = at
        if self._free[x]:  # the driver may be capturing into it right now
            ctypes.memset(addr + at // 2, 0, at - at // 2)
        return memoryview(buf)[:at].toreadonly()  # given back by the next take()

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
        if grab_mode is not None:
            _check_enum(grab_mode, GrabMode, "grab_mode")
            self.grab_mode = grab_mode
        if framebuffer_count is not None:
            if not 1 <= framebuffer_count <= 2:
                raise ValueError("framebuffer_count must be 1-2")
            self.framebuffer_count = framebuffer_count
        time.sleep(0.05)  # deinit + init: slow, and it blocks
        self.reconfigures += 1
        if frame_size is None:
            frame_size = self.frame_size
        if frame_size.value > self.max_frame_size.value:
            frame_size = self.max_frame_size
        self._set_size(frame_size)
        # cam_deinit frees the buffers; CircuitPython keeps buffer_to_return.
        espidf._free(self._psram)
        self._psram = 0
        if self._held is not None:
            self._held = _FREED
        # cam_init + cam_config, return values unchecked: a failed buffer
        # allocation leaves cam_obj NULL and raises nothing.
        need = _fb_bytes(self.frame_size, self.pixel_format, self.framebuffer_count)
        if not espidf._alloc(need):
            self._broken = ("reconfigure(frame_size=%s): cam_config could not allocate %d frame buffer "
                            "bytes (%d of PSRAM free), so cam_obj is NULL" % (
                                self.frame_size.name, need, espidf.psram_free()))
            return
        self._psram = need
        self._broken = None
        self._start(self.framebuffer_count)

    def deinit(self):
        global live_camera
        if self.deinited:
            return
        self.deinited = True
        espidf._free(getattr(self, "_psram", 0))
        self._psram = 0
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
