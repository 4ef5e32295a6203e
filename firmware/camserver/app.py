"""Builds the camera, frame source and server, and runs them beside the
user's own tasks."""

import asyncio

from .camera import Camera
from .frames import FrameSource
from .server import Server


class App:
    def __init__(self, settings, pool, host="0.0.0.0"):
        self.settings = settings
        for e in settings.errors:
            print("camserver: settings.toml:", e)
        for n in settings.notes:
            print("camserver: note:", n)
        self.camera = Camera(settings)  # never raises; camera.error says what went wrong
        if self.camera.ok:
            print("camserver: camera %s on %s (%s)" % (getattr(self.camera.cam, "sensor_name", "?"), self.camera.board_id,
                                                      self.camera.pin_names))
        else:
            print("camserver: no camera; the server runs anyway and /status says why")
        self.source = FrameSource(self.camera, settings)
        self.server = Server(pool, settings, self.source, self.camera, host)

    async def run(self, *tasks):
        """Serve until stop(), together with tasks (coroutines: the robot's
        own loops). Every one of them must await regularly."""
        self.server.listen()
        own = [asyncio.create_task(t) for t in tasks]
        try:
            await asyncio.gather(self.server.run(), self.source.run())
        finally:
            for t in own:
                t.cancel()

    def stop(self):
        self.server.stop()
        self.source.stop()
