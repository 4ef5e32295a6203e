# camserver firmware: an async camera server that never blocks.
# Copy this folder's code.py, camserver/ and settings.toml to CIRCUITPY.
import asyncio
import os
import time

import socketpool
import supervisor
import wifi

from camserver import config
from camserver.app import App

settings = config.load()
# CIRCUITPY_WIFI_SSID/PASSWORD in settings.toml connect at boot; this is
# for a network that was not there yet. Without an SSID there is nothing
# to retry (connect(None) is a TypeError): say what to set. Saving
# settings.toml restarts code.py.
while not wifi.radio.connected:
    ssid = os.getenv("CIRCUITPY_WIFI_SSID")
    if not ssid:
        print('camserver: Wi-Fi: no network: set CIRCUITPY_WIFI_SSID = "your-network" and '
              'CIRCUITPY_WIFI_PASSWORD = "your-password" in settings.toml')
        time.sleep(5)
        continue
    try:
        wifi.radio.connect(str(ssid), os.getenv("CIRCUITPY_WIFI_PASSWORD"))
    except Exception as e:
        print("camserver: Wi-Fi %r:" % ssid, e, "- retrying in 5 s")
        time.sleep(5)
app = App(settings, socketpool.SocketPool(wifi.radio))
print("camserver on http://%s:%d/" % (wifi.radio.ipv4_address, settings.port))


async def robot():
    # Your own code runs beside the server: drive motors, read sensors.
    # It keeps running while someone streams, as long as it awaits.
    while True:
        await asyncio.sleep(0.02)


try:
    asyncio.run(app.run(robot()))
except Exception as e:  # nothing should get here; if it does, start over
    print("camserver: stopped:", repr(e), "- reloading in 5 s")
    time.sleep(5)
    supervisor.reload()
