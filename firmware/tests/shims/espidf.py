"""Host stand-in for espidf: its errors and memory queries, over a PSRAM
budget the booted board defines (shimboards: the PSRAM its CircuitPython
build maps).

On the board (ports/espressif/bindings/espidf/__init__.c) the queries take
no argument and ask ESP-IDF about MALLOC_CAP_8BIT memory: PSRAM and
internal RAM together. esp32-camera allocates its frame buffers in PSRAM
only (cam_hal.c: MALLOC_CAP_SPIRAM, fb_location's default), and the
CircuitPython VM heap grows into the same PSRAM (port_malloc tries it
first). So here:

    PSRAM      what the board maps (set at boot by shimboards.use)
    OTHER      what the VM heap and the system hold in it (an estimate;
               tests may change it)
    camera     what the camera driver's frame buffers hold now
    free PSRAM = PSRAM - OTHER - camera, one block (no fragmentation)

heap_caps_get_largest_free_block() is the larger of that block and
internal RAM's largest free block, as on the board: a caller cannot tell
which one it is. espcamera allocates through _alloc()/_free().

Errors: IDFError (an OSError) for every esp_err_t but ESP_ERR_NO_MEM,
which is espidf.MemoryError (a MemoryError); common-hal/espidf/__init__.c.
"""

import builtins


class IDFError(OSError):
    pass


class MemoryError(builtins.MemoryError):  # noqa: A001  (espidf.MemoryError, as on the board)
    pass


PSRAM = 8 * 1024 * 1024
OTHER = 512 * 1024
INTERNAL_LARGEST = 96 * 1024   # internal RAM's largest free block
INTERNAL_FREE = 160 * 1024
INTERNAL_TOTAL = 320 * 1024
camera = 0


def psram_free():
    return max(0, PSRAM - OTHER - camera)


def _alloc(n):
    """heap_caps_malloc(n, MALLOC_CAP_SPIRAM) for the camera: False if it
    does not fit."""
    global camera
    if n > psram_free():
        return False
    camera += n
    return True


def _free(n):
    global camera
    camera = max(0, camera - n)


def _boot(psram):
    global PSRAM, camera
    PSRAM = psram
    camera = 0


def heap_caps_get_total_size():
    return PSRAM + INTERNAL_TOTAL


def heap_caps_get_free_size():
    return psram_free() + INTERNAL_FREE


def heap_caps_get_largest_free_block():
    return max(psram_free(), INTERNAL_LARGEST)


def get_total_psram():
    return PSRAM
