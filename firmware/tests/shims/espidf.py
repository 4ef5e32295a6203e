"""Host stand-in for espidf's memory queries."""


class IDFError(OSError):
    pass


def heap_caps_get_free_size():
    return 4 * 1024 * 1024


def heap_caps_get_largest_free_block():
    return 2 * 1024 * 1024


def get_total_psram():
    return 8 * 1024 * 1024
