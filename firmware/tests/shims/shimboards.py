"""The boards the `board` shim can be, transcribed from CircuitPython's own
definitions: ports/espressif/boards/<board_id>/pins.c, mpconfigboard.h and
mpconfigboard.mk in adafruit/circuitpython at cd3da4a5d894 (2026-08-21),
with gen_board.py.

Each entry lists exactly the names that board's `board` module has:
  pins    name -> GPIO number (aliases share one microcontroller.Pin)
  tuples  name -> GPIO numbers (board.CAMERA_DATA and the like)
  i2c     bus singleton (board.I2C, board.SSCB_I2C, ...) -> (scl, sda) GPIOs
  other   other names (SPI, UART, DISPLAY): present, but not modelled
and the PSRAM its build can use (psram, bytes: CIRCUITPY_ESP_PSRAM_SIZE,
of which an ESP32 maps 4 MB less ESP-IDF's 256 KB bank-switch reserve;
espidf.get_total_psram()), which the espidf shim budgets.
A pins.c entry whose value is NULL (ai-thinker's CAMERA_RESET) is left out:
reading it on the board raises AttributeError, as here.
"""

BOARDS = {
    # ports/espressif/boards/ai-thinker-esp32-cam/pins.c and mpconfigboard.h
    'ai-thinker-esp32-cam': {
        'mcu': 'esp32',
        'psram': 3932160,
        'pins': {
            'LED': 33, 'LED_INVERTED': 33, 'FLASHLIGHT': 4, 'BUTTON': 0, 'SDIO_CLK': 14, 'SDIO_CMD': 15,
            'SDIO_D0': 2, 'SDIO_D1': 4, 'SDIO_D2': 12, 'SDIO_D3': 13, 'SD_SCK': 14, 'SD_MOSI': 15,
            'SD_MISO': 2, 'SD_CS': 13, 'CAMERA_DATA2': 5, 'CAMERA_DATA3': 18, 'CAMERA_DATA4': 19,
            'CAMERA_DATA5': 21, 'CAMERA_DATA6': 36, 'CAMERA_DATA7': 39, 'CAMERA_DATA8': 34,
            'CAMERA_DATA9': 35, 'CAMERA_HREF': 23, 'CAMERA_PCLK': 22, 'CAMERA_PWDN': 32,
            'CAMERA_VSYNC': 25, 'CAMERA_XCLK': 0, 'CAMERA_SIOD': 26, 'CAMERA_SIOC': 27, 'U0R': 3, 'U0T': 1,
            'IO0': 0, 'IO1': 1, 'IO3': 3, 'IO16': 16, 'IO2': 2, 'IO4': 4, 'IO12': 12, 'IO13': 13,
            'IO14': 14, 'IO15': 15, 'SDA': 4, 'SCL': 13,
        },
        'tuples': {'CAMERA_DATA': (5, 18, 19, 21, 36, 39, 34, 35)},
        'i2c': {'I2C': (27, 26)},
        'other': ('SD_SPI',),
    },
    # ports/espressif/boards/espressif_esp32s3_eye/pins.c and mpconfigboard.h
    'espressif_esp32s3_eye': {
        'mcu': 'esp32s3',
        'psram': 8388608,
        'pins': {
            'BOOT': 0, 'BUTTONS': 1, 'MIC_SDO': 2, 'IO3': 3, 'SDA': 4, 'SCL': 5, 'CAMERA_VSYNC': 6,
            'CAMERA_HREF': 7, 'CAMERA_PCLK': 13, 'BATTERY': 14, 'CAMERA_XCLK': 15, 'MOSI': 47, 'SCK': 21,
            'MISO1': 40, 'MOSI1': 38, 'SCK1': 39, 'MIC_SCK': 41, 'MIC_WS': 42, 'LCD_DC': 43, 'LCD_CS': 44,
            'BACKLIGHT': 48,
        },
        'tuples': {'CAMERA_DATA': (11, 9, 8, 10, 12, 18, 17, 16)},
        'i2c': {'I2C': (5, 4)},
        'other': ('SPI', 'DISPLAY'),
    },
    # ports/espressif/boards/seeed_xiao_esp32_s3_sense/pins.c and mpconfigboard.h
    'seeed_xiao_esp32_s3_sense': {
        'mcu': 'esp32s3',
        'psram': 8388608,
        'pins': {
            'D0': 1, 'A0': 1, 'D1': 2, 'A1': 2, 'D2': 3, 'A2': 3, 'D3': 4, 'A3': 4, 'D4': 5, 'A4': 5,
            'SDA': 5, 'D5': 6, 'A5': 6, 'SCL': 6, 'D6': 43, 'TX': 43, 'D7': 44, 'RX': 44, 'D8': 7,
            'SCK': 7, 'D9': 8, 'MISO': 8, 'D10': 9, 'MOSI': 9, 'D11': 38, 'I2S_SD': 38, 'CAM_VSYNC': 38,
            'D12': 39, 'I2S_SCK': 39, 'MTCK': 39, 'CAM_SCL': 39, 'D13': 40, 'I2S_WS': 40, 'MTDO': 40,
            'CAM_SDA': 40, 'D14': 41, 'MTDI': 41, 'MIC_DATA': 41, 'RX_1': 41, 'D15': 42, 'MTMS': 42,
            'MIC_CLK': 42, 'TX_1': 42, 'D16': 10, 'ADC': 10, 'CAM_XCLK': 10, 'D17': 13, 'SCK_1': 13,
            'CAM_PCLK': 13, 'D18': 12, 'MISO_1': 12, 'CAM_D5': 12, 'D19': 11, 'MOSI_1': 11, 'CAM_D6': 11,
            'LED': 21, 'SDCS': 21, 'CAM_D0': 15, 'CAM_D1': 17, 'CAM_D2': 18, 'CAM_D3': 16, 'CAM_D4': 14,
            'CAM_D7': 48, 'CAM_HREF': 47,
        },
        'tuples': {'CAM_DATA': (15, 17, 18, 16, 14, 12, 11, 48)},
        'i2c': {'I2C': (6, 5)},
        'other': ('SPI', 'UART'),
    },
    # ports/espressif/boards/m5stack_timer_camera_x/pins.c and mpconfigboard.h
    'm5stack_timer_camera_x': {
        'mcu': 'esp32',
        'psram': 3932160,
        'pins': {
            'LED': 2, 'G4': 4, 'G13': 13, 'SDA': 4, 'SCL': 13, 'BAT_HOLD': 33, 'BAT_ADC': 38,
            'BM8563_SCL': 14, 'BM8563_SDA': 12, 'VSYNC': 22, 'HREF': 26, 'PCLK': 21, 'XCLK': 27,
            'RESET': 15, 'SSCB_SDA': 25, 'SSCB_SCL': 23, 'D9': 19, 'D8': 36, 'D7': 18, 'D6': 39, 'D5': 5,
            'D4': 34, 'D3': 35, 'D2': 32,
        },
        'tuples': {'D': (32, 35, 34, 5, 39, 18, 36, 19)},
        'i2c': {'I2C': (13, 4), 'BM8563_I2C': (14, 12), 'SSCB_I2C': (23, 25)},
        'other': (),
    },
    # ports/espressif/boards/adafruit_esp32s3_camera/pins.c and mpconfigboard.h
    'adafruit_esp32s3_camera': {
        'mcu': 'esp32s3',
        'psram': 2097152,
        'pins': {
            'MOSI': 35, 'SCK': 36, 'MISO': 37, 'TFT_RESET': 38, 'TFT_CS': 39, 'TFT_DC': 40,
            'TFT_BACKLIGHT': 45, 'CARD_CS': 48, 'MIC': 2, 'IRQ': 3, 'NEOPIXEL': 1, 'SPEAKER': 46,
            'BUTTON': 0, 'BATTERY_MONITOR': 4, 'A0': 17, 'A1': 18, 'SDA': 34, 'SCL': 33, 'CAMERA_VSYNC': 5,
            'CAMERA_HREF': 6, 'CAMERA_DATA9': 7, 'CAMERA_XCLK': 8, 'CAMERA_DATA8': 9, 'CAMERA_DATA7': 10,
            'CAMERA_PCLK': 11, 'CAMERA_DATA6': 12, 'CAMERA_DATA2': 13, 'CAMERA_DATA5': 14,
            'CAMERA_DATA3': 15, 'CAMERA_DATA4': 16, 'CAMERA_RESET': 47, 'CAMERA_PWDN': 21,
        },
        'tuples': {'CAMERA_DATA': (13, 15, 16, 14, 12, 10, 9, 7)},
        'i2c': {'I2C': (33, 34), 'STEMMA_I2C': (33, 34)},
        'other': ('SPI', 'DISPLAY'),
    },
    # ports/espressif/boards/espressif_saola_1_wrover/pins.c and mpconfigboard.h
    'espressif_saola_1_wrover': {
        'mcu': 'esp32s2',
        'psram': 2097152,
        'pins': {
            'IO0': 0, 'IO1': 1, 'IO2': 2, 'IO3': 3, 'IO4': 4, 'IO5': 5, 'IO6': 6, 'IO7': 7, 'IO8': 8,
            'IO9': 9, 'IO10': 10, 'IO11': 11, 'IO12': 12, 'IO13': 13, 'IO14': 14, 'IO15': 15, 'IO16': 16,
            'IO17': 17, 'IO18': 18, 'IO19': 19, 'IO20': 20, 'IO21': 21, 'IO26': 26, 'IO33': 33, 'IO34': 34,
            'IO35': 35, 'IO36': 36, 'IO37': 37, 'IO38': 38, 'IO39': 39, 'IO40': 40, 'IO41': 41, 'IO42': 42,
            'TX': 43, 'IO43': 43, 'RX': 44, 'IO44': 44, 'IO45': 45, 'IO46': 46, 'NEOPIXEL': 18,
        },
        'tuples': {},
        'i2c': {},
        'other': (),
    },
}

# The camera module each board comes with (not in CircuitPython's board
# files: the vendors' product pages, as in camserver/boards.py). The
# espcamera shim simulates that sensor: its name and largest frame size.
CAMERAS = {
    'ai-thinker-esp32-cam': 'OV2640',
    'espressif_esp32s3_eye': 'OV2640',
    'seeed_xiao_esp32_s3_sense': 'OV2640',
    'm5stack_timer_camera_x': 'OV3660',
    'adafruit_esp32s3_camera': 'OV5640',
    'espressif_saola_1_wrover': 'OV2640',  # wired by hand: the robot's
}

# What `import board` gives until a test picks another board.
DEFAULT = "ai-thinker-esp32-cam"


class _NotModelled:
    def __init__(self, name):
        self.name = name

    def __call__(self, *args, **kwargs):
        raise NotImplementedError("shim: board.%s is not modelled" % self.name)


def _bus_singleton(name, scl, sda):
    import busio
    import microcontroller
    made = []

    def get():
        # shared-module/board/__init__.c: the same object until deinit;
        # creating it asserts that both pins are free.
        if made and not made[0].deinited():
            return made[0]
        bus = busio.I2C(microcontroller._get(scl), microcontroller._get(sda))
        made[:] = [bus]
        return bus
    get.__name__ = name
    return get


def use(board_id):
    """Boot as board_id: a fresh `board` module with exactly that board's
    names, every pin free, and its PSRAM free of camera buffers. Returns
    the module."""
    import sys
    import types
    import espidf
    import microcontroller
    spec = BOARDS[board_id]
    microcontroller._reset(spec["mcu"])
    espidf._boot(spec["psram"])
    mod = types.ModuleType("board")
    mod.board_id = board_id
    for name, n in spec["pins"].items():
        setattr(mod, name, microcontroller._get(n))
    for name, numbers in spec["tuples"].items():
        setattr(mod, name, tuple(microcontroller._get(n) for n in numbers))
    for name, (scl, sda) in spec["i2c"].items():
        setattr(mod, name, _bus_singleton(name, scl, sda))
    for name in spec["other"]:
        setattr(mod, name, _NotModelled(name))
    sys.modules["board"] = mod
    return mod
