"""The frame pipeline: one task owns the camera; everyone else shares its
newest frame.

take() returns a memoryview into the driver's buffer that the next take()
reuses, so each frame is copied once, into a Frame: one of a few buffers
that are allocated once and then reused, so capturing allocates nothing
per frame. A client pins the Frame it is sending (next() pins, release()
unpins); the capture task only ever writes into a Frame that nobody has
pinned and that is not the newest. Clients wait on an Event that is
replaced with each frame and ask for "newer than what I sent", skipping
whatever they missed: nothing queues.

At most max_clients + 2 Frames exist (one pinned per client, the newest,
one being filled), each allocated when first needed. If an allocation fails
(MemoryError) the frame is skipped, on_pressure sheds the newest stream
viewer, and capturing goes on with the buffers there are.

Only this task touches the driver: take(), and reconfigure() between
frames for /control?var=framesize.

The driver captures only into a free buffer, and CircuitPython holds the
one take() returned until the next take() gives it back. So with one
buffer this task gives it back as soon as the frame is copied (a take()
that finds no frame); and a frame queued while nobody took one (idle,
throttled, every Frame pinned) may be old however the driver's grab mode
replaces frames: it is dropped (STALE_MS), and the next one published.
"""

import asyncio
import gc

from .camera import ControlError
from .compat import sleep_ms, ticks_ms, ticks_add, ticks_diff, timestamp

# After a failed allocation, make do with the buffers there are for this
# long before trying to add one again; each failure in a row doubles it.
GROW_BACKOFF_MS = 1000
GROW_BACKOFF_MAX_MS = 60000

# A frame that may have waited in the driver's queue longer than this is
# dropped: frames are stamped when published. (handlers.FRESH_MS likewise.)
STALE_MS = 150


class Frame:
    def __init__(self):
        self.buf = bytearray(0)
        self.mv = memoryview(self.buf)
        self.n = 0          # bytes of buf holding the JPEG
        self.seq = 0        # frame number; 0 = none yet
        self.ts = (0, 0)    # capture time (s, us since boot), for X-Timestamp
        self.ticks = 0      # and in ticks_ms
        self.users = 0      # clients sending it right now

    def data(self):
        return self.mv[:self.n]


def _capacity(n):
    # Headroom, so that a slightly bigger JPEG does not mean a new buffer.
    return (n + n // 4 + 4095) // 4096 * 4096


class _Reconfigure:
    def __init__(self, size):
        self.size = size
        self.done = asyncio.Event()
        self.error = None


class FrameSource:
    def __init__(self, camera, settings):
        self.camera = camera
        self.settings = settings
        self.buffers = []        # every Frame
        self.newest = None       # the newest Frame, or None
        self.seq = 0
        self._event = asyncio.Event()
        self._demand_until = ticks_ms()
        self._empty_at = ticks_ms()  # when the driver's queue was last seen empty
        self._requests = []      # _Reconfigure, for the capture task
        self._grow_after = ticks_ms()
        self._grow_backoff = GROW_BACKOFF_MS
        self.on_pressure = None  # called after a MemoryError, to shed load
        self.frames = 0
        self.timeouts = 0
        self.dropped = 0         # frames dropped as stale
        self.mem_errors = 0
        self.errors = 0
        self.last_error = ""
        self._fps_t = ticks_ms()
        self._fps_n = 0
        self.fps = 0.0
        self._stop = False

    def want(self):
        """Someone wants frames: capture for at least linger_ms more."""
        self._demand_until = ticks_add(ticks_ms(), self.settings.linger_ms)

    def _demanded(self):
        return ticks_diff(self._demand_until, ticks_ms()) > 0

    async def run(self):
        """The capture task. Idles (no take()) while nobody watches. Nothing
        it meets ends it: not a driver error, not a MemoryError."""
        gap = 1000 // self.settings.max_fps if self.settings.max_fps else 0
        last = ticks_ms()  # when the last frame was published, or its stale one dropped
        dropped_at = None
        while not self._stop:
            try:
                if self._requests:
                    self._reconfigure()
                    await sleep_ms(0)
                    continue
                if not self.camera.ok or not self._demanded():
                    await sleep_ms(20)
                    continue
                self._hand_back()
                if gap and ticks_diff(ticks_ms(), last) < gap:
                    await sleep_ms(max(1, gap - ticks_diff(ticks_ms(), last)))
                    continue
                if not self.camera.frame_available():
                    self._empty_at = ticks_ms()
                    await sleep_ms(3)
                    continue
                if ticks_diff(ticks_ms(), self._empty_at) > STALE_MS:
                    # Queued before then, and not replaced since: the driver
                    # had no free buffer. Drop it; the next one is captured
                    # into the buffer this take() gives back.
                    if self._take() is not None:
                        self.dropped += 1
                    dropped_at = ticks_ms()
                    await sleep_ms(0)
                    continue
                into = self._free()
                if into is None:  # every buffer is being sent: wait for one
                    await sleep_ms(5)
                    continue
                mv = self._take()
                if mv is None:
                    self.timeouts += 1
                    await sleep_ms(3)
                    continue
                n = len(mv)
                if not self._fit(into, n):
                    mv = None  # this frame is lost; the clients keep the last one
                    self._pressure()
                    await sleep_ms(20)
                    continue
                into.mv[:n] = mv  # the one copy, into a buffer we reuse
                into.n = n
                mv = None  # never keep the driver's buffer
                self._hand_back()
                self._publish(into)
                # max_fps counts from the drop, if any: it costs no rate.
                last = ticks_ms() if dropped_at is None else dropped_at
                dropped_at = None
                await sleep_ms(0)
            except MemoryError:
                self._pressure()
                await sleep_ms(20)
            except Exception as e:  # the driver: count it, say it, go on
                self.errors += 1
                self.last_error = repr(e)
                await sleep_ms(100)

    def _take(self):
        mv = self.camera.take()
        # The queue holds at most one frame (LATEST with 2 buffers, or 1
        # buffer): this take() emptied it.
        self._empty_at = ticks_ms()
        return mv

    def _hand_back(self):
        """With one buffer the driver is idle while we hold it: give it
        back, by a take() that finds no frame (which on an ESP32-S3 also
        resets the idle DMA: harmless). Not a timeout."""
        if self.camera.holds_only_buffer():
            self._take()

    def _free(self):
        """A Frame to capture into: unpinned and not the newest. Adds one
        (without a buffer yet) while under the limit, or returns None."""
        for f in self.buffers:
            if f.users == 0 and f is not self.newest:
                return f
        if len(self.buffers) >= self.settings.max_clients + 2:
            return None
        if ticks_diff(ticks_ms(), self._grow_after) < 0:
            return None
        f = Frame()
        self.buffers.append(f)
        return f

    def _fit(self, f, n):
        """Make f hold n bytes. False if memory is short (f is dropped)."""
        if len(f.buf) >= n:
            return True
        f.buf = f.mv = None  # let the old buffer go first: a lower peak
        try:
            f.buf = bytearray(_capacity(n))
            f.mv = memoryview(f.buf)
            self._grow_backoff = GROW_BACKOFF_MS
            return True
        except MemoryError:
            self.buffers.remove(f)
            self._grow_after = ticks_add(ticks_ms(), self._grow_backoff)
            self._grow_backoff = min(2 * self._grow_backoff, GROW_BACKOFF_MAX_MS)
            return False

    def _pressure(self):
        self.mem_errors += 1
        gc.collect()
        if self.on_pressure is not None:
            self.on_pressure()

    def _publish(self, f):
        ev = asyncio.Event()  # first: if this fails, nothing has changed
        self.seq += 1
        f.seq = self.seq
        f.ts = timestamp()
        f.ticks = ticks_ms()
        self.newest = f
        self.frames += 1
        self._fps_n += 1
        dt = ticks_diff(f.ticks, self._fps_t)
        if dt >= 1000:
            self.fps = self._fps_n * 1000 / dt
            self._fps_t = f.ticks
            self._fps_n = 0
        old, self._event = self._event, ev
        old.set()

    async def next(self, after, timeout_ms):
        """Pin and return the newest Frame numbered above after, or None if
        none comes within timeout_ms. The caller must release() it."""
        self.want()
        deadline = ticks_add(ticks_ms(), timeout_ms)
        while self.newest is None or self.newest.seq <= after:
            left = ticks_diff(deadline, ticks_ms())
            if left <= 0:
                return None
            try:
                await asyncio.wait_for(self._event.wait(), left / 1000)
            except asyncio.TimeoutError:
                return None
            self.want()
        f = self.newest
        f.users += 1
        return f

    def release(self, f):
        f.users -= 1

    async def reconfigure(self, size, timeout_ms):
        """Have the capture task reinitialise the camera at size, between
        two frames, and wait for that without holding anyone up. Changes
        asked for together are applied once, the last one winning. Raises
        ControlError."""
        req = _Reconfigure(size)
        self._requests.append(req)
        try:
            await asyncio.wait_for(req.done.wait(), timeout_ms / 1000)
        except asyncio.TimeoutError:
            raise ControlError(503, "camera busy: framesize not applied in time")
        if req.error is not None:
            raise req.error

    def _reconfigure(self):
        reqs, self._requests = self._requests, []
        err = None
        try:
            self.camera.reconfigure(reqs[-1].size)
        except ControlError as e:
            err = e
        if err is None or err.status != 400:  # 400: refused, nothing changed
            self._empty_at = ticks_ms()  # new buffers, an empty queue
            # The newest frame has the old size: nobody gets it as fresh
            # now. (Clients sending it have it pinned; that is still safe.)
            self.newest = None
        for r in reqs:
            r.error = err
            r.done.set()

    def stop(self):
        self._stop = True
