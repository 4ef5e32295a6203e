"""Host stand-in for supervisor: ticks_ms wraps at 2**29 like the real one."""

import time


def ticks_ms():
    return (time.monotonic_ns() // 1000000) & ((1 << 29) - 1)


class runtime:
    autoreload = False
