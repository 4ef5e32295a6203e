"""Which board pins the camera is wired to.

Each supported board is listed under its `board.board_id`, naming pins by
the names that board's own `board` module has: CircuitPython's
ports/espressif/boards/<board_id>/pins.c (adafruit/circuitpython at
cd3da4a5d894). Boards call the same signal by different names
(CAMERA_PCLK, CAM_PCLK, PCLK), so nothing here guesses.

Roles: data (an 8-pin tuple, least significant bit first), pclk, vsync,
href, and optional xclk, pwdn, reset, led. The camera's I2C (SCCB) bus is
either `i2c`, the name of one of the board's bus singletons (board.I2C()
and friends: sharing it keeps the bus usable by your own code too), or
`scl` + `sda`, pins for a busio.I2C of our own.

settings.toml can set any role, on any board, by the board's own names:
CAMSERVER_PIN_DATA = "IO21,IO17,IO16,IO18,IO37,IO34,IO36,IO39" (or one
tuple's name, "CAMERA_DATA"), CAMSERVER_PIN_PCLK = "IO12", ...,
CAMSERVER_PIN_SCL / CAMSERVER_PIN_SDA, or CAMSERVER_PIN_I2C = "I2C".
"none" leaves an optional pin unconnected.
"""

BOARDS = {
    # ports/espressif/boards/ai-thinker-esp32-cam/pins.c. board.I2C() is
    # bus 0 of CIRCUITPY_BOARD_I2C_PIN in its mpconfigboard.h: GPIO27/26,
    # the sensor's SIOC/SIOD (board.SCL/SDA are other pins, GPIO13/4).
    # CAMERA_RESET is NULL there: not connected.
    "ai-thinker-esp32-cam": {
        "camera": "OV2640",
        "data": "CAMERA_DATA", "pclk": "CAMERA_PCLK", "vsync": "CAMERA_VSYNC", "href": "CAMERA_HREF",
        "xclk": "CAMERA_XCLK", "pwdn": "CAMERA_PWDN", "i2c": "I2C", "led": "FLASHLIGHT",
    },
    # ports/espressif/boards/espressif_esp32s3_eye/pins.c: board.I2C() is
    # the DEFAULT_I2C_BUS (SCL GPIO5, SDA GPIO4), the sensor's bus. No
    # power-down or reset pin.
    "espressif_esp32s3_eye": {
        "camera": "OV2640",
        "data": "CAMERA_DATA", "pclk": "CAMERA_PCLK", "vsync": "CAMERA_VSYNC", "href": "CAMERA_HREF",
        "xclk": "CAMERA_XCLK", "i2c": "I2C",
    },
    # ports/espressif/boards/seeed_xiao_esp32_s3_sense/pins.c: CAM_* names.
    # board.I2C() is the header's D4/D5; the sensor's bus (CAM_SCL GPIO39,
    # CAM_SDA GPIO40) has no singleton in the board module.
    "seeed_xiao_esp32_s3_sense": {
        "camera": "OV2640 (OV3660 on later units)",
        "data": "CAM_DATA", "pclk": "CAM_PCLK", "vsync": "CAM_VSYNC", "href": "CAM_HREF",
        "xclk": "CAM_XCLK", "scl": "CAM_SCL", "sda": "CAM_SDA",
    },
    # ports/espressif/boards/m5stack_timer_camera_x/pins.c: bare names (D,
    # PCLK, ...), and the sensor's bus is board.SSCB_I2C() (GPIO23/25).
    "m5stack_timer_camera_x": {
        "camera": "OV3660",
        "data": "D", "pclk": "PCLK", "vsync": "VSYNC", "href": "HREF",
        "xclk": "XCLK", "reset": "RESET", "i2c": "SSCB_I2C",
    },
    # ports/espressif/boards/adafruit_esp32s3_camera/pins.c (the MEMENTO):
    # the sensor shares board.I2C() (SCL GPIO33, SDA GPIO34, also
    # STEMMA_I2C) with the STEMMA QT port.
    "adafruit_esp32s3_camera": {
        "camera": "OV5640",
        "data": "CAMERA_DATA", "pclk": "CAMERA_PCLK", "vsync": "CAMERA_VSYNC", "href": "CAMERA_HREF",
        "xclk": "CAMERA_XCLK", "pwdn": "CAMERA_PWDN", "reset": "CAMERA_RESET", "i2c": "I2C",
    },
}

PIN_ROLES = ("data", "pclk", "vsync", "href", "xclk", "pwdn", "reset", "scl", "sda", "i2c", "led")
_REQUIRED = ("data", "pclk", "vsync", "href")
_NONE = ("", "none", "None", "NONE")

HOW_TO = ("set CAMSERVER_PIN_DATA (8 pins, D0 first, or a tuple's name), CAMSERVER_PIN_PCLK, "
          "CAMSERVER_PIN_VSYNC, CAMSERVER_PIN_HREF, and CAMSERVER_PIN_SCL + CAMSERVER_PIN_SDA "
          "(or CAMSERVER_PIN_I2C), plus CAMSERVER_PIN_XCLK / _PWDN / _RESET if wired, in "
          "settings.toml, using the names in dir(board)")


class PinError(Exception):
    """The pins cannot be worked out; the message says what to set."""


def setting_key(role):
    return "CAMSERVER_PIN_" + role.upper()


def plan(board_id, overrides):
    """The pin names to use, as {role: name or None}: the board's table,
    then the CAMSERVER_PIN_* overrides ({role: str}). Raises PinError."""
    known = BOARDS.get(board_id)
    names = dict(known) if known else {}
    names.pop("camera", None)
    for role, value in overrides.items():
        value = str(value).strip()
        if role in ("scl", "sda") and value not in _NONE:
            names.pop("i2c", None)  # pins given by hand replace the singleton
        if role == "i2c" and value not in _NONE:
            names.pop("scl", None)
            names.pop("sda", None)
        names[role] = None if value in _NONE else value
    missing = [setting_key(r) for r in _REQUIRED if not names.get(r)]
    if not names.get("i2c") and not (names.get("scl") and names.get("sda")):
        missing.append("%s and %s (or %s)" % (setting_key("scl"), setting_key("sda"), setting_key("i2c")))
    if missing:
        if known is None and not overrides:
            raise PinError("board %r has no built-in camera pins: %s" % (board_id, HOW_TO))
        raise PinError("camera pins not set: %s; %s" % (", ".join(missing), HOW_TO))
    return names


def resolve(board, names):
    """Look the names up on the board module: {role: Pin, tuple or None},
    with "i2c" a zero-argument callable that makes or returns the bus.
    Raises PinError naming the setting and the name the board lacks."""
    out = {}
    for role in PIN_ROLES:
        name = names.get(role)
        if role == "i2c" or not name:
            out[role] = None
            continue
        if role == "data" and "," in name:
            out[role] = tuple(_lookup(board, role, n.strip()) for n in name.split(","))
        else:
            out[role] = _lookup(board, role, name)
        if role == "data":
            try:
                n = len(out[role])
            except TypeError:
                n = 1
            if n != 8:
                raise PinError("%s: %s is %d pin(s), the camera needs 8" % (setting_key(role), name, n))
    if names.get("i2c"):
        bus = _lookup(board, "i2c", names["i2c"])
        if not callable(bus):
            raise PinError("%s: board.%s is not an I2C bus" % (setting_key("i2c"), names["i2c"]))
        out["i2c"] = bus
    else:
        import busio
        scl, sda = out.pop("scl"), out.pop("sda")
        out["i2c"] = lambda: busio.I2C(scl, sda)
    out.pop("scl", None)
    out.pop("sda", None)
    return out


def _lookup(board, role, name):
    try:
        return getattr(board, name)
    except AttributeError:
        raise PinError("%s: this board (%s) has no pin named %r; see dir(board)" % (
            setting_key(role), getattr(board, "board_id", "?"), name))
