# camserver firmware: an async camera server that never blocks.
# Copy this folder's code.py, camserver/ and settings.toml to CIRCUITPY.
import asyncio
import os

import socketpool
import wifi

from camserver import config
from camserver.app import App

settings = config.load()
if not wifi.radio.connected:  # CIRCUITPY_WIFI_SSID/PASSWORD connect at boot
    wifi.radio.connect(os.getenv("CIRCUITPY_WIFI_SSID"), os.getenv("CIRCUITPY_WIFI_PASSWORD"))
app = App(settings, socketpool.SocketPool(wifi.radio))
print("camserver on http://%s:%d/" % (wifi.radio.ipv4_address, settings.port))


async def robot():
    # Your own code runs beside the server: drive motors, read sensors.
    # It keeps running while someone streams, as long as it awaits.
    while True:
        await asyncio.sleep(0.02)


asyncio.run(app.run(robot()))
