"""Builds the camera, frame source and server, and runs them beside the
user's own tasks."""

import asyncio

from .camera import Camera
from .frames import FrameSource
from .server import Server


class App:
    def __init__(self, settings, pool, pins=None, host="0.0.0.0"):
        self.settings = settings
        self.camera = Camera(settings, pins)
        self.source = FrameSource(self.camera, settings)
        self.server = Server(pool, settings, self.source, self.camera, host)

    async def run(self, *tasks):
        """Serve forever, together with tasks (coroutines: the robot's own
        loops). Every one of them must await regularly."""
        self.server.listen()
        await asyncio.gather(self.server.run(), self.source.run(), *tasks)

    def stop(self):
        self.server.stop()
        self.source.stop()
