"""The espcamera wrapper: opening the sensor, the CameraWebServer /control
variables mapped to espcamera properties, and /status values."""

import gc

from . import boards

try:
    import espcamera
except ImportError:
    try:  # CircuitPython 8.0 betas called it esp32_camera
        import esp32_camera as espcamera
    except ImportError:  # a build without it: serve anyway, and say so
        espcamera = None
try:
    import espidf
except ImportError:
    espidf = None

# esp32-camera's framesize_t numbers (the /control?var=framesize values),
# by name: the enum's own order differs between CircuitPython versions.
FRAMESIZE_NUM = {
    "R96X96": 0, "QQVGA": 1, "QCIF": 3, "HQVGA": 4, "R240X240": 5, "QVGA": 6, "CIF": 8, "HVGA": 9,
    "VGA": 10, "SVGA": 11, "XGA": 12, "HD": 13, "SXGA": 14, "UXGA": 15, "FHD": 16, "P_HD": 17,
    "P_3MP": 18, "QXGA": 19, "QHD": 20, "WQXGA": 21, "P_FHD": 22, "QSXGA": 23,
}
FRAMESIZE_NAME = dict((v, k) for k, v in FRAMESIZE_NUM.items())
# (width, height) by name: esp32-camera's resolution[] (driver/sensor.c).
FRAME_DIMS = {
    "R96X96": (96, 96), "QQVGA": (160, 120), "QCIF": (176, 144), "HQVGA": (240, 176), "R240X240": (240, 240),
    "QVGA": (320, 240), "CIF": (400, 296), "HVGA": (480, 320), "VGA": (640, 480), "SVGA": (800, 600),
    "XGA": (1024, 768), "HD": (1280, 720), "SXGA": (1280, 1024), "UXGA": (1600, 1200), "FHD": (1920, 1080),
    "P_HD": (720, 1280), "P_3MP": (864, 1536), "QXGA": (2048, 1536), "QHD": (2560, 1440),
    "WQXGA": (2560, 1600), "P_FHD": (1080, 1920), "QSXGA": (2560, 1920),
}

# The driver's frame buffers live in PSRAM, and CircuitPython does not
# check that they were allocated when the size changes: reconfigure()
# frees them, fails to allocate bigger ones, returns as if all were well,
# and the next take() dereferences NULL (a hard fault: safe mode). At
# start a failed allocation is IDFError, like a wiring fault. So sizes are
# checked against the largest free block first. Kept free beside the
# buffers: one more buffer's worth, for the VM heap (it grows into the
# same PSRAM, and holds our copy of each frame, a JPEG no bigger than a
# buffer), and PSRAM_SPARE, for the rest of it and because the largest
# free block may be internal RAM (heap_caps_get_largest_free_block() asks
# about both), whose blocks are smaller than that.
PSRAM_SPARE = 128 * 1024

# /control var -> (espcamera property, lowest, highest). Booleans are 0..1.
CONTROLS = {
    "quality": ("quality", 2, 63),
    "contrast": ("contrast", -2, 2),
    "brightness": ("brightness", -2, 2),
    "saturation": ("saturation", -2, 2),
    "gainceiling": ("gain_ceiling", 0, 6),
    "colorbar": ("colorbar", 0, 1),
    "awb": ("whitebal", 0, 1),
    "agc": ("gain_ctrl", 0, 1),
    "aec": ("exposure_ctrl", 0, 1),
    "hmirror": ("hmirror", 0, 1),
    "vflip": ("vflip", 0, 1),
    "awb_gain": ("awb_gain", 0, 1),
    "agc_gain": ("agc_gain", 0, 30),
    "aec_value": ("aec_value", 0, 1200),
    "aec2": ("aec2", 0, 1),
    "dcw": ("dcw", 0, 1),
    "bpc": ("bpc", 0, 1),
    "wpc": ("wpc", 0, 1),
    "raw_gma": ("raw_gma", 0, 1),
    "lenc": ("lenc", 0, 1),
    "special_effect": ("special_effect", 0, 6),
    "wb_mode": ("wb_mode", 0, 4),
    "ae_level": ("ae_level", -2, 2),
}
_BOOLS = ("colorbar", "whitebal", "gain_ctrl", "exposure_ctrl", "hmirror", "vflip", "awb_gain", "aec2",
          "dcw", "bpc", "wpc", "raw_gma", "lenc")
_GAIN_CEILINGS = ("GAIN_2X", "GAIN_4X", "GAIN_8X", "GAIN_16X", "GAIN_32X", "GAIN_64X", "GAIN_128X")


def fb_bytes(name):
    """One of esp32-camera's JPEG frame buffers for size name: width *
    height / 5 bytes (cam_hal.c cam_config)."""
    w, h = FRAME_DIMS[name]
    return w * h // 5


def largest_free_block():
    """Bytes in the largest free block of memory, or None where that
    cannot be known."""
    try:
        return espidf.heap_caps_get_largest_free_block()
    except AttributeError:  # no espidf, or an older one
        return None


def buffers_fit(name, count, largest, old_name=None, old_count=0):
    """Would count frame buffers of size name fit, with largest the
    largest free block and, when reconfiguring, old_count buffers of
    old_name freed first? (A freed buffer is not assumed to join the
    largest block: new buffers go in its place, if they fit there.)"""
    each = fb_bytes(name)
    n = max(0, largest - each - PSRAM_SPARE) // each
    if old_name is not None:
        n += old_count * (fb_bytes(old_name) // each)
    return n >= count


class ControlError(Exception):
    """A /control request that cannot be applied; status is 400 or 500."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


class Camera:
    """Owns the espcamera.Camera. Never raises: if the pins are unknown or
    the sensor will not start, the server still runs, error says why and
    what to set, /capture answers 503 and /status shows it."""

    def __init__(self, settings, xclk_hz=20000000):
        self.settings = settings
        self.cam = None
        self.error = ""
        self.board_id = "?"
        self.pin_names = ""   # "data=CAMERA_DATA pclk=CAMERA_PCLK ...", for messages
        self.led = None
        self.led_intensity = -1
        self.xclk_mhz = xclk_hz // 1000000
        self.holding = False  # the last take() returned a frame: its buffer is ours
        try:
            self._open(xclk_hz)
        except Exception as e:  # MemoryError, a driver surprise: still serve
            self.cam = None
            self.error = "camera init failed: %r" % (e,)
        if self.error:
            print("camserver: camera:", self.error)

    def _open(self, xclk_hz):
        import board
        self.board_id = getattr(board, "board_id", "?")
        if espcamera is None:
            self.error = "this CircuitPython build has no espcamera module (it needs a board with PSRAM)"
            return
        try:
            names = boards.plan(self.board_id, self.settings.pins)
            pins = boards.resolve(board, names)
        except boards.PinError as e:
            self.error = str(e)
            return
        self.pin_names = " ".join("%s=%s" % (r, names[r]) for r in boards.PIN_ROLES if names.get(r))
        why = self.no_room(self.settings.frame_size, self.settings.fb_count)
        if why:
            self.error = "camera not started on %s: %s; try a smaller CAMSERVER_FRAME_SIZE or CAMSERVER_FB_COUNT = 1" % (
                self.board_id, why)
            return
        try:
            i2c = pins["i2c"]()
        except Exception as e:  # a pin in use, pins the bus cannot use
            self.error = "camera I2C bus (%s): %s; check CAMSERVER_PIN_SCL/SDA or CAMSERVER_PIN_I2C" % (
                self.pin_names, _why(e))
            return
        first = None
        for attempt in range(3):
            try:
                self.cam = espcamera.Camera(
                    data_pins=pins["data"], pixel_clock_pin=pins["pclk"], vsync_pin=pins["vsync"],
                    href_pin=pins["href"], i2c=i2c,
                    external_clock_pin=pins["xclk"], external_clock_frequency=xclk_hz,
                    powerdown_pin=pins["pwdn"], reset_pin=pins["reset"],
                    pixel_format=espcamera.PixelFormat.JPEG,
                    frame_size=getattr(espcamera.FrameSize, self.settings.frame_size),
                    jpeg_quality=self.settings.jpeg_quality,
                    framebuffer_count=self.settings.fb_count,
                    # LATEST replaces a queued frame only while the driver
                    # has a free buffer, and CircuitPython holds one until
                    # the next take(): after an idle spell the queued frame
                    # is old all the same (FrameSource drops it).
                    grab_mode=espcamera.GrabMode.LATEST if self.settings.fb_count > 1 else espcamera.GrabMode.WHEN_EMPTY,
                )
                break
            except Exception as e:
                if first is None:
                    first = e
                # esp_camera_init fails now and then (IDFError 0x20002: the
                # sensor missed an I2C write) and a retry works. Anything
                # else (a pin in use, a bad argument) will fail again.
                if not isinstance(e, OSError):
                    break
                # The failed Camera holds its pins until the collector
                # finalises it; without this the retry finds them "in use".
                gc.collect()
        if self.cam is None:
            if isinstance(first, MemoryError) or str(first) == "Generic Failure":
                # ESP_FAIL (IDFError) is what a frame buffer that did not
                # fit gives, though not only that.
                hint = "if the frame buffers did not fit, try a smaller CAMSERVER_FRAME_SIZE or " \
                       "CAMSERVER_FB_COUNT = 1; else check the wiring and the CAMSERVER_PIN_* settings, then reset"
            else:
                hint = "check the wiring and the CAMSERVER_PIN_* settings, then reset"
            self.error = "camera did not start on %s (%s): %s; %s" % (self.board_id, self.pin_names, _why(first), hint)
            if not names.get("i2c"):
                i2c.deinit()  # our own bus: give its pins back
            return
        if pins["led"] is not None:
            try:
                import pwmio
                self.led = pwmio.PWMOut(pins["led"], frequency=5000, duty_cycle=0)
                self.led_intensity = 0
            except Exception as e:
                print("camserver: LED:", _why(e))

    @property
    def ok(self):
        return self.cam is not None

    def frame_available(self):
        try:
            return self.cam.frame_available
        except AttributeError:  # older CircuitPython: just try
            return True

    def take(self):
        """A memoryview valid only until the next take(), or None.
        CircuitPython keeps the frame's buffer until that next take() gives
        it back, and the driver captures only into a free buffer."""
        mv = self.cam.take(0)
        self.holding = mv is not None
        return mv

    def holds_only_buffer(self):
        """True while we hold the driver's only buffer: it captures nothing
        until a take() gives it back."""
        return self.holding and self.settings.fb_count == 1

    def set_control(self, var, val):
        """Apply /control?var=&val=. Not framesize: that one reinitialises
        the camera, in the capture task (FrameSource.reconfigure)."""
        if var == "led_intensity":
            if self.led is None:
                raise ControlError(400, "this board has no LED")
            v = max(0, min(255, val))
            self.led.duty_cycle = v * 257
            self.led_intensity = v
            return
        spec = CONTROLS.get(var)
        if spec is None:
            raise ControlError(400, "unknown var %r" % var)
        attr, lo, hi = spec
        if not lo <= val <= hi:
            raise ControlError(400, "%s must be %d..%d" % (var, lo, hi))
        if not self.ok:
            raise ControlError(500, self.error)
        if attr in _BOOLS:
            value = bool(val)
        elif attr == "gain_ceiling":
            value = getattr(espcamera.GainCeiling, _GAIN_CEILINGS[val])
        else:
            value = val
        try:
            setattr(self.cam, attr, value)
        except (AttributeError, ValueError, OSError) as e:
            # The sensor refused it (or the I2C bus was busy).
            raise ControlError(500, "sensor refused %s=%d: %r" % (var, val, e))

    def no_room(self, name, count, old_name=None, old_count=0):
        """Why count frame buffers of size name would not fit in memory
        now, or "" if they would (or nobody can tell)."""
        largest = largest_free_block()
        if largest is None or buffers_fit(name, count, largest, old_name, old_count):
            return ""
        gc.collect()  # the VM heap gives its empty areas back
        largest = largest_free_block()
        if buffers_fit(name, count, largest, old_name, old_count):
            return ""
        return "%d x %d KB of frame buffers for %s, and %d KB left free beside them, do not fit the largest " \
               "free block (%d KB)" % (count, fb_bytes(name) // 1024, name, (fb_bytes(name) + PSRAM_SPARE) // 1024,
                                       largest // 1024)

    def _driver_size(self, size):
        """The name of the size the driver uses for size: clamped to the
        sensor's largest."""
        name = _name(size)
        try:
            top = _name(self.cam.max_frame_size)
        except Exception:
            return name
        if FRAMESIZE_NUM.get(name, 0) > FRAMESIZE_NUM.get(top, 99):
            return top
        return name

    def frame_size_for(self, num):
        """The FrameSize for /control's framesize number (esp32-camera's
        framesize_t); ControlError if there is none."""
        name = FRAMESIZE_NAME.get(num)
        if name is None:
            raise ControlError(400, "unknown framesize %d" % num)
        if not self.ok:
            raise ControlError(500, self.error)
        size = getattr(espcamera.FrameSize, name, None)
        if size is None:
            raise ControlError(400, "framesize %s not supported here" % name)
        return size

    def reconfigure(self, size):
        """Only the capture task calls this, between frames: it swaps the
        driver's buffers (and blocks the VM while it does). ControlError
        400, with nothing changed, if the new buffers would not fit."""
        try:
            old, count = self._driver_size(self.cam.frame_size), self.cam.framebuffer_count
        except Exception:
            old, count = None, self.settings.fb_count
        name = self._driver_size(size)
        why = self.no_room(name, count, old, count if old else 0)
        if why:
            raise ControlError(400, "framesize %s not applied: %s; try a smaller one, or CAMSERVER_FB_COUNT = 1" % (
                name, why))
        try:
            # reconfigure() frees the buffers but CircuitPython keeps the
            # one it holds, to give back at the next take(): that address
            # may then be a new buffer's, one the driver is filling. So
            # give it back first, with take()s until one finds no frame.
            for _ in range(3):
                if self.cam.take(0) is None:
                    break
            self.holding = False
            # The driver clamps to the sensor's largest size.
            self.cam.reconfigure(frame_size=size)
        except Exception as e:
            raise ControlError(500, "reconfigure failed: %r" % (e,))

    def status_pairs(self):
        """CameraWebServer's /status keys, in its order, as (key, int)."""
        c = self.cam
        out = [("xclk", self.xclk_mhz), ("pixformat", 4)]

        def get(attr, default=0):
            try:
                v = getattr(c, attr)
            except Exception:
                return default
            if attr == "gain_ceiling":
                try:
                    return _GAIN_CEILINGS.index(str(v).split(".")[-1])
                except ValueError:
                    return 0
            return int(v)

        size = 0
        if c is not None:
            try:
                size = FRAMESIZE_NUM.get(_name(c.frame_size), 0)
            except Exception:
                size = 0
        out.append(("framesize", size))
        for key, attr in (("quality", "quality"), ("brightness", "brightness"), ("contrast", "contrast"),
                          ("saturation", "saturation"), ("sharpness", "sharpness"),
                          ("special_effect", "special_effect"), ("wb_mode", "wb_mode"), ("awb", "whitebal"),
                          ("awb_gain", "awb_gain"), ("aec", "exposure_ctrl"), ("aec2", "aec2"),
                          ("ae_level", "ae_level"), ("aec_value", "aec_value"), ("agc", "gain_ctrl"),
                          ("agc_gain", "agc_gain"), ("gainceiling", "gain_ceiling"), ("bpc", "bpc"),
                          ("wpc", "wpc"), ("raw_gma", "raw_gma"), ("lenc", "lenc"), ("hmirror", "hmirror"),
                          ("dcw", "dcw"), ("colorbar", "colorbar")):
            out.append((key, get(attr) if c is not None else 0))
        out.append(("led_intensity", self.led_intensity))
        return out


def _name(size):
    """A FrameSize's name: str() gives "espcamera.FrameSize.VGA"."""
    return str(size).split(".")[-1]


def _why(e):
    return "%s: %s" % (type(e).__name__, e)
