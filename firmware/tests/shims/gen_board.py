"""Print a shimboards.BOARDS entry from a CircuitPython board definition.

    python3 gen_board.py BOARD_ID path/to/ports/espressif/boards/BOARD_ID

reads pins.c, mpconfigboard.h and mpconfigboard.mk there (git show
HEAD:ports/espressif/boards/<board>/pins.c in a circuitpython checkout) and
prints the names the board module has: pins (GPIO numbers), pin tuples, and
bus singletons with the pins CircuitPython builds them on; and the PSRAM
the build can use. Check the output against the files: the parser knows
the usual forms only.
"""

import pprint
import re
import sys


def psram_usable(mcu, mk):
    """Bytes of PSRAM the build can use: CIRCUITPY_ESP_PSRAM_SIZE, of which
    an ESP32 maps only 4 MB (SOC_EXTRAM_DATA_SIZE), less the himem
    bank-switch reserve (ESP-IDF's default 8 x 32 KB) when the chip is
    bigger: common-hal/espidf/__init__.c psram_size_usable()."""
    m = re.search(r"CIRCUITPY_ESP_PSRAM_SIZE\s*=\s*(\d+)MB", mk)
    if not m:
        return 0
    size = int(m.group(1)) << 20
    if mcu == "esp32" and size > 4 << 20:
        size = (4 << 20) - 8 * 32 * 1024
    return size


def parse(board_id, d):
    pins_c = open(d + "/pins.c").read()
    conf = open(d + "/mpconfigboard.h").read()
    mcu = re.search(r'MICROPY_HW_MCU_NAME\s+"([^"]+)"', conf).group(1).lower()

    tuples = {}
    for name, body in re.findall(r"mp_rom_obj_tuple_t (\w+) = \{(.*?)\n\};", pins_c, re.S):
        tuples[name] = tuple(int(n) for n in re.findall(r"&pin_GPIO(\d+)", body))

    # I2C buses: CIRCUITPY_BOARD_I2C_PIN lists them by index, else the
    # DEFAULT_I2C_BUS_* pair is bus 0.
    buses = []
    m = re.search(r"CIRCUITPY_BOARD_I2C_PIN\s+\{(.*?)\}\s*\n(?!\s)", conf, re.S)
    if m:
        buses = [(int(a), int(b)) for a, b in re.findall(
            r"\.scl = &pin_GPIO(\d+), \.sda = &pin_GPIO(\d+)", m.group(1))]
    else:
        scl = re.search(r"DEFAULT_I2C_BUS_SCL\s+\(&pin_GPIO(\d+)\)", conf)
        sda = re.search(r"DEFAULT_I2C_BUS_SDA\s+\(&pin_GPIO(\d+)\)", conf)
        if scl and sda:
            buses = [(int(scl.group(1)), int(sda.group(1)))]
    singletons = {"board_i2c_obj": ("i2c", 0), "board_spi_obj": ("spi", 0), "board_uart_obj": ("uart", 0)}
    for name, bus, idx in re.findall(r"CIRCUITPY_BOARD_BUS_SINGLETON\((\w+), (\w+), (\d+)\)", pins_c):
        singletons["board_%s_obj" % name] = (bus, int(idx))

    out = {"mcu": mcu, "psram": psram_usable(mcu, open(d + "/mpconfigboard.mk").read()),
           "pins": {}, "tuples": {}, "i2c": {}, "other": []}
    table = pins_c[pins_c.index("board_module_globals_table"):]
    for name, value in re.findall(r"MP_ROM_QSTR\(MP_QSTR_(\w+)\),\s*(.*?)\s*\}", table):
        g = re.match(r"MP_ROM_PTR\(&pin_GPIO(\d+)\)", value)
        t = re.match(r"MP_ROM_PTR\(&(\w+)\)", value)
        if g:
            out["pins"][name] = int(g.group(1))
        elif value == "NULL":
            continue  # a NULL entry reads as AttributeError on the board
        elif t and t.group(1) in tuples:
            out["tuples"][name] = tuples[t.group(1)]
        elif t and t.group(1) in singletons:
            bus, idx = singletons[t.group(1)]
            if bus == "i2c" and idx < len(buses):
                out["i2c"][name] = buses[idx]
            else:
                out["other"].append(name)
        else:
            out["other"].append(name)
    return out


if __name__ == "__main__":
    pprint.pprint({sys.argv[1]: parse(sys.argv[1], sys.argv[2])}, width=110, sort_dicts=False)
