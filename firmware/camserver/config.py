"""Settings from settings.toml (os.getenv), with defaults and checks.

A bad value never stops the board: its default is used instead and the
problem is listed in Settings.errors, which the serial console and /status
show.

Sockets: lwIP has CONFIG_LWIP_MAX_SOCKETS = 8 for the whole board, and
CircuitPython's web workflow (on when settings.toml has
CIRCUITPY_WEB_API_PASSWORD) takes up to 3 of them: its listener, the
request it serves and a serial websocket. camserver needs its listener,
max_clients, and one more: to make room for a newcomer it must first
accept it, and when lwIP has no socket left accept() fails as if nobody
had connected, so nobody is ever evicted. max_clients is lowered to fit,
and Settings.notes says so.
"""

import os

from .boards import PIN_ROLES, setting_key

LWIP_MAX_SOCKETS = 8      # ports/espressif/esp-idf-config/sdkconfig.defaults
WEB_WORKFLOW_SOCKETS = 3  # supervisor/shared/web_workflow: listening, active, websocket

FRAME_SIZES = ("R96X96", "QQVGA", "QCIF", "HQVGA", "R240X240", "QVGA", "CIF", "HVGA", "VGA", "SVGA",
               "XGA", "HD", "SXGA", "UXGA", "FHD", "P_HD", "P_3MP", "QXGA", "QHD", "WQXGA", "P_FHD", "QSXGA")


class Settings:
    """Everything the server can be told. Attribute names follow the
    CAMSERVER_* keys in lower case."""

    def __init__(self):
        self.port = 8080              # 80 is CircuitPython's web workflow
        self.max_clients = 4          # connections at once; see socket_budget()
        self.stream_clients = 3       # of which /stream viewers
        self.frame_size = "VGA"
        self.jpeg_quality = 12        # 2..55, lower is better quality
        self.fb_count = 2             # the driver's frame buffers (PSRAM); see README
        self.max_fps = 0              # 0: as fast as the sensor
        self.token = ""               # if set, every endpoint but /health wants it
        self.pins = {}                # CAMSERVER_PIN_<ROLE> given: {role: str}
        self.head_max = 2048          # request head bytes
        self.line_max = 512           # request line bytes
        self.headers_max = 32
        self.header_timeout_ms = 3000  # whole head within this of its first byte (slowloris)
        self.idle_timeout_ms = 10000   # keep-alive idle
        self.write_timeout_ms = 3000   # one frame to one client (stalled viewers are dropped)
        self.capture_timeout_ms = 3000  # /capture waits this long for a frame
        self.stall_ms = 1000           # a viewer whose send is stuck this long can be closed to make room
        self.linger_ms = 2000          # keep capturing this long after the last request
        self.errors = []               # settings that were bad, as messages
        self.notes = []                # settings changed to fit the board, as messages


def _int(getenv, s, key, default, lo, hi):
    v = getenv(key)
    if v is None or v == "":
        return default
    try:
        n = int(v)
    except (TypeError, ValueError):
        s.errors.append("%s: not a number: %r (using %d)" % (key, v, default))
        return default
    if not lo <= n <= hi:
        s.errors.append("%s: %d out of range %d..%d (using %d)" % (key, n, lo, hi, default))
        return default
    return n


def load(getenv=None):
    """Read the CAMSERVER_* settings (settings.toml on the board)."""
    getenv = getenv or os.getenv
    s = Settings()
    s.port = _int(getenv, s, "CAMSERVER_PORT", s.port, 1, 65535)
    s.max_clients = _int(getenv, s, "CAMSERVER_MAX_CLIENTS", s.max_clients, 1, 6)
    s.stream_clients = _int(getenv, s, "CAMSERVER_STREAM_CLIENTS", min(s.stream_clients, s.max_clients),
                            0, s.max_clients)
    s.jpeg_quality = _int(getenv, s, "CAMSERVER_JPEG_QUALITY", s.jpeg_quality, 2, 55)
    s.fb_count = _int(getenv, s, "CAMSERVER_FB_COUNT", s.fb_count, 1, 2)
    s.max_fps = _int(getenv, s, "CAMSERVER_MAX_FPS", s.max_fps, 0, 60)
    size = getenv("CAMSERVER_FRAME_SIZE")
    if size:
        size = str(size).upper()
        if size in FRAME_SIZES:
            s.frame_size = size
        else:
            s.errors.append("CAMSERVER_FRAME_SIZE: unknown size %r (using %s)" % (size, s.frame_size))
    token = getenv("CAMSERVER_TOKEN")
    if token:
        s.token = str(token)
    for role in PIN_ROLES:
        v = getenv(setting_key(role))
        if v is not None:
            s.pins[role] = str(v)
    socket_budget(s, getenv("CIRCUITPY_WEB_API_PASSWORD") is not None)
    return s


def socket_budget(s, web_workflow):
    """Lower max_clients (and stream_clients) to the sockets there are:
    ours are what the web workflow leaves, less our listener and one to
    accept a newcomer with (who then replaces an idle or stuck client)."""
    held = WEB_WORKFLOW_SOCKETS if web_workflow else 0
    most = LWIP_MAX_SOCKETS - held - 2
    if s.max_clients > most:
        s.notes.append("max_clients is %d, not %d: of the board's %d sockets %scamserver's listener takes 1 "
                       "and making room for a newcomer 1" % (
                           most, s.max_clients, LWIP_MAX_SOCKETS,
                           "CircuitPython's web workflow (CIRCUITPY_WEB_API_PASSWORD is set) holds up to %d, " % held
                           if held else ""))
        s.max_clients = most
        s.stream_clients = min(s.stream_clients, most)
