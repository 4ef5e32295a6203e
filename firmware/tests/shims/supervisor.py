"""Host stand-in for supervisor.

ticks_ms() counts milliseconds modulo 2**29, like CircuitPython's. Tests
set OFFSET to start it anywhere, e.g. just before the wrap.
"""

import time

OFFSET = 0
_MASK = (1 << 29) - 1


def ticks_ms():
    return (time.monotonic_ns() // 1000000 + OFFSET) & _MASK


class runtime:
    autoreload = False


def reload():
    raise SystemExit("supervisor.reload()")
