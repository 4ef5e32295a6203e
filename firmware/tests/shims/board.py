"""Host stand-in for an ESP32 camera board's `board` module (AI-Thinker pins)."""


class Pin:
    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return "board." + self.name


CAMERA_DATA = tuple(Pin("CAMERA_DATA%d" % i) for i in range(2, 10))
CAMERA_XCLK = Pin("CAMERA_XCLK")
CAMERA_PCLK = Pin("CAMERA_PCLK")
CAMERA_VSYNC = Pin("CAMERA_VSYNC")
CAMERA_HREF = Pin("CAMERA_HREF")
CAMERA_PWDN = Pin("CAMERA_PWDN")
CAMERA_SIOD = Pin("CAMERA_SIOD")
CAMERA_SIOC = Pin("CAMERA_SIOC")
FLASHLIGHT = Pin("FLASHLIGHT")
LED = Pin("LED")
