"""Host stand-in for esp32_camera, the name CircuitPython 8.0's betas gave
espcamera (renamed in adafruit/circuitpython cda5689263). The constructor,
enums and methods were the same (ports/espressif/bindings/esp32_camera/
Camera.c before that commit), so this is the espcamera shim under the old
name. Tests hide `espcamera` to boot as such a build."""

from espcamera import Camera, FrameSize, GainCeiling, GrabMode, PixelFormat  # noqa: F401
