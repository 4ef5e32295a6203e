"""The few things that differ between CircuitPython and CPython.

Everything else in camserver is the Python subset CircuitPython runs.
"""

import errno
import time

import asyncio

try:
    from supervisor import ticks_ms
except ImportError:  # pragma: no cover - CPython without shims
    def ticks_ms():
        return (time.monotonic_ns() // 1000000) & _TICKS_MAX

_TICKS_PERIOD = 1 << 29
_TICKS_MAX = _TICKS_PERIOD - 1
_TICKS_HALF = _TICKS_PERIOD // 2


def ticks_diff(a, b):
    """a - b in ms, correct across the 2**29 wrap of ticks_ms."""
    return ((a - b + _TICKS_HALF) & _TICKS_MAX) - _TICKS_HALF


def ticks_add(t, delta):
    return (t + delta) & _TICKS_MAX


if hasattr(asyncio, "sleep_ms"):
    sleep_ms = asyncio.sleep_ms
else:
    def sleep_ms(ms):
        return asyncio.sleep(ms / 1000)


async def wait_for_ms(aw, ms):
    """asyncio.wait_for with a timeout in ms; raises asyncio.TimeoutError."""
    return await asyncio.wait_for(aw, ms / 1000)


def timestamp():
    """(seconds, microseconds) since boot, for X-Timestamp."""
    us = time.monotonic_ns() // 1000
    return us // 1000000, us % 1000000


# errno values differ between ESP-IDF and Linux: always compare names.
EAGAIN = errno.EAGAIN
ETIMEDOUT = errno.ETIMEDOUT
ENOTCONN = errno.ENOTCONN
_WOULD_BLOCK = (errno.EAGAIN, getattr(errno, "EWOULDBLOCK", errno.EAGAIN), errno.ETIMEDOUT)


def errno_of(e):
    if getattr(e, "errno", None) is not None:
        return e.errno
    return e.args[0] if e.args else None


def would_block(e):
    return errno_of(e) in _WOULD_BLOCK


def is_eof(e):
    """Non-blocking EOF is OSError(ENOTCONN) on CircuitPython."""
    return errno_of(e) == ENOTCONN


def mem_free():
    try:
        import gc
        return gc.mem_free()
    except AttributeError:
        return -1


def task_count():
    """Tasks alive, where the runtime can tell (CPython), else -1."""
    try:
        return len(asyncio.all_tasks())
    except (AttributeError, RuntimeError):
        return -1
