"""The frame pipeline: one task owns the camera; everyone else shares its
newest frame.

take() returns a memoryview into the driver's buffer that the next take()
overwrites, so the frame is copied out once (bytes) and that copy is what
every client sends. Clients wait on an Event that is replaced with each
frame; a slow client simply asks for "newer than what I sent" and skips
whatever it missed. Nothing queues.
"""

import asyncio

from .compat import sleep_ms, ticks_ms, ticks_add, ticks_diff, timestamp


class FrameSource:
    def __init__(self, camera, settings):
        self.camera = camera
        self.settings = settings
        self.frame = None       # bytes: the newest frame
        self.seq = 0            # its number; 0 = none yet
        self.ts = (0, 0)        # its capture time (s, us since boot)
        self.ticks = 0          # and in ticks_ms
        self.lock = asyncio.Lock()  # held around take() and reconfigure()
        self._event = asyncio.Event()
        self._demand_until = ticks_ms()
        self.frames = 0
        self.timeouts = 0
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
        """The capture task. Idles (no take()) while nobody watches."""
        gap = 1000 // self.settings.max_fps if self.settings.max_fps else 0
        last = ticks_ms()
        while not self._stop:
            if not self.camera.ok or not self._demanded():
                await sleep_ms(20)
                continue
            if gap and ticks_diff(ticks_ms(), last) < gap:
                await sleep_ms(max(1, gap - ticks_diff(ticks_ms(), last)))
                continue
            frame = None
            async with self.lock:
                if self.camera.frame_available():
                    mv = self.camera.take()
                    if mv is None:
                        self.timeouts += 1
                    else:
                        frame = bytes(mv)  # copy out before the next take()
                    mv = None  # never keep the driver's buffer
            if frame is None:
                await sleep_ms(3)
                continue
            self.frame = frame
            last = ticks_ms()
            self._publish()
            await sleep_ms(0)

    def _publish(self):
        self.seq += 1
        self.ts = timestamp()
        self.ticks = ticks_ms()
        self.frames += 1
        self._fps_n += 1
        dt = ticks_diff(ticks_ms(), self._fps_t)
        if dt >= 1000:
            self.fps = self._fps_n * 1000 / dt
            self._fps_t = ticks_ms()
            self._fps_n = 0
        ev = self._event
        self._event = asyncio.Event()
        ev.set()

    async def next(self, after, timeout_ms):
        """The newest frame numbered above after, as (frame, seq, ts), or
        None if none comes within timeout_ms."""
        self.want()
        deadline = ticks_add(ticks_ms(), timeout_ms)
        while self.seq <= after:
            left = ticks_diff(deadline, ticks_ms())
            if left <= 0:
                return None
            ev = self._event
            try:
                await asyncio.wait_for(ev.wait(), left / 1000)
            except asyncio.TimeoutError:
                return None
            self.want()
        return self.frame, self.seq, self.ts

    def stop(self):
        self._stop = True
