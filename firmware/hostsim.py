"""Run the real firmware on this machine, under CPython, with shim modules
for the board (firmware/tests/shims) and a synthetic camera.

    python3 firmware/hostsim.py --port 8080 [--fps 15] [--size 320x240]

Settings not given as options come from CAMSERVER_* environment variables,
as they would from settings.toml (e.g. CAMSERVER_TOKEN=s3cret).

--heap-kb N gives the process a small heap: after start-up, every further
allocation fails with MemoryError once N KB more are in use, wherever it
happens (a hard RLIMIT_DATA on the whole process, with CPython's own
allocator switched to plain malloc so that a small object needs a little
memory, not a fresh 1 MB arena). gc.mem_free() then reports what is left.
"""

import argparse
import asyncio
import gc
import os
import re
import resource
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "tests", "shims"), HERE]

import espcamera  # noqa: E402  (the shim)
import shimboards  # noqa: E402
import socketpool  # noqa: E402
import wifi  # noqa: E402

from camserver import config  # noqa: E402
from camserver.app import App  # noqa: E402

SIZES = {"160x120": "QQVGA", "320x240": "QVGA", "640x480": "VGA", "800x600": "SVGA", "1280x720": "HD"}


def vmdata():
    with open("/proc/self/status") as f:
        return int(re.search(r"VmData:\s+(\d+) kB", f.read()).group(1)) * 1024


def limit_heap(kb):
    limit = vmdata() + kb * 1024
    resource.setrlimit(resource.RLIMIT_DATA, (limit, resource.getrlimit(resource.RLIMIT_DATA)[1]))
    gc.mem_free = lambda: max(0, limit - vmdata())  # what CircuitPython's gc has


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--fps", type=float, default=15)
    ap.add_argument("--size", choices=sorted(SIZES), help="frame size (default: the firmware's, VGA)")
    ap.add_argument("--max-clients", type=int)
    ap.add_argument("--board", default=shimboards.DEFAULT, choices=sorted(shimboards.BOARDS))
    ap.add_argument("--frame-kb", type=int, default=0, help="pad every frame to about this size")
    ap.add_argument("--heap-kb", type=int, default=0, help="fail allocations past this much more memory")
    args = ap.parse_args()
    if args.heap_kb and os.environ.get("PYTHONMALLOC") != "malloc":
        env = dict(os.environ, PYTHONMALLOC="malloc", GLIBC_TUNABLES="glibc.malloc.top_pad=0")
        os.execve(sys.executable, [sys.executable] + sys.argv, env)
    shimboards.use(args.board)
    espcamera.FPS = args.fps
    espcamera.PAD_TO = args.frame_kb * 1024
    env = {"CAMSERVER_PORT": str(args.port)}
    if args.size:
        env["CAMSERVER_FRAME_SIZE"] = SIZES[args.size]
    if args.max_clients:
        env["CAMSERVER_MAX_CLIENTS"] = str(args.max_clients)
    settings = config.load(lambda k: env.get(k, os.environ.get(k)))
    app = App(settings, socketpool.SocketPool(wifi.radio), host="127.0.0.1")
    if args.heap_kb:
        limit_heap(args.heap_kb)
    print("hostsim: camserver on http://127.0.0.1:%d/" % settings.port, flush=True)
    try:
        asyncio.run(app.run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
