"""Run the real firmware on this machine, under CPython, with shim modules
for the board (firmware/tests/shims) and a synthetic camera.

    python3 firmware/hostsim.py --port 8080 [--fps 15] [--size 320x240]
"""

import argparse
import asyncio
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "tests", "shims"), HERE]

import espcamera  # noqa: E402  (the shim)
import socketpool  # noqa: E402
import wifi  # noqa: E402

from camserver import config  # noqa: E402
from camserver.app import App  # noqa: E402

SIZES = {"160x120": "QQVGA", "320x240": "QVGA", "640x480": "VGA", "800x600": "SVGA", "1280x720": "HD"}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--fps", type=float, default=15)
    ap.add_argument("--size", default="320x240", choices=sorted(SIZES))
    ap.add_argument("--max-clients", type=int, default=4)
    args = ap.parse_args()
    espcamera.FPS = args.fps
    env = {"CAMSERVER_PORT": str(args.port), "CAMSERVER_FRAME_SIZE": SIZES[args.size],
           "CAMSERVER_MAX_CLIENTS": str(args.max_clients)}
    settings = config.load(lambda k: env.get(k, os.environ.get(k)))
    app = App(settings, socketpool.SocketPool(wifi.radio), host="127.0.0.1")
    print("hostsim: camserver on http://127.0.0.1:%d/" % settings.port, flush=True)
    try:
        asyncio.run(app.run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
