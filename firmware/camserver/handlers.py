"""The endpoints. Each is a coroutine that writes its response to the
connection and returns whether the connection may be kept alive."""

import json

from . import VERSION
from .camera import ControlError
from .compat import mem_free, ticks_ms, ticks_diff, sleep_ms, would_block
from .conn import STREAM, deadline_in, Closed, Timeout
from .http import response_head, error_body

BOUNDARY = "123456789000000000000987654321"
_CORS = ("Access-Control-Allow-Origin", "*")


async def send_error(srv, conn, req, status, message, keep_alive=False):
    body = error_body(status, message)
    headers = [("Content-Type", "text/plain"), _CORS]
    if status == 503:
        headers.append(("Retry-After", "1"))
    if status == 401:
        headers.append(("WWW-Authenticate", "Bearer"))
    if status == 405:
        headers.append(("Allow", "GET, HEAD"))
    head = response_head(status, headers, len(body), keep_alive)
    if req is None or req.method != "HEAD":
        head += body
    await conn.send(head, deadline_in(srv.settings.write_timeout_ms))
    return keep_alive


async def send_body(srv, conn, req, body, ctype, extra=()):
    headers = [("Content-Type", ctype), ("Cache-Control", "no-store"), _CORS]
    headers.extend(extra)
    d = deadline_in(srv.settings.write_timeout_ms)
    head = response_head(200, headers, len(body), req.keep_alive)
    if req.method == "HEAD":
        await conn.send(head, d)
    elif len(body) <= 1024 and isinstance(body, bytes):
        await conn.send(head + body, d)  # one segment
    else:
        await conn.send(head, d)
        await conn.send(body, d)  # a frame buffer: sent as it is, not copied
    return req.keep_alive


# A frame captured this recently counts as current for /capture.
FRESH_MS = 150


async def capture(srv, conn, req):
    """One fresh JPEG: the newest frame if it is current (FRESH_MS) and this
    connection has not had it yet, else the next one captured. A poller on
    a keep-alive connection thus gets every frame once, at the camera's
    rate. ?fresh=0 takes the newest frame however old."""
    src = srv.source
    if not srv.camera.ok:
        return await send_error(srv, conn, req, 503, srv.camera.error, req.keep_alive)
    after = src.seq
    newest = src.newest
    if newest is not None and newest.seq > conn.last_seq:
        if req.query.get("fresh") == "0" or ticks_diff(ticks_ms(), newest.ticks) <= FRESH_MS:
            after = newest.seq - 1
    f = await src.next(after, srv.settings.capture_timeout_ms)
    if f is None:
        return await send_error(srv, conn, req, 503, "camera timeout: no frame", req.keep_alive)
    try:
        conn.last_seq = f.seq
        srv.captures += 1
        return await send_body(srv, conn, req, f.data(), "image/jpeg", (
            ("Content-Disposition", "inline; filename=capture.jpg"),
            ("X-Timestamp", "%d.%06d" % f.ts),
            ("X-Frame-Seq", str(f.seq)),
        ))
    finally:
        src.release(f)


async def stream(srv, conn, req):
    """MJPEG, ESPHome-style framing: no chunking, the boundary after each
    part. A viewer gets the newest frame each time it is ready for one;
    each part goes out as its small header and then the frame buffer
    itself, never joined into a copy."""
    s = srv.settings
    src = srv.source
    if not srv.camera.ok:
        return await send_error(srv, conn, req, 503, srv.camera.error)
    if srv.stream_clients >= s.stream_clients:
        # Make room if a viewer has stopped reading; else refuse.
        victim = srv.stalled_viewer(ticks_ms())
        if victim is None:
            return await send_error(srv, conn, req, 503, "too many stream viewers (%d)" % s.stream_clients)
        srv.evicted += 1
        srv.drop(victim)
    gap = 0
    try:
        fps = int(req.query.get("fps", "0"))
        if fps > 0:
            gap = 1000 // fps
    except ValueError:
        return await send_error(srv, conn, req, 400, "fps must be an integer")
    conn.enter(STREAM)
    head = response_head(200, [
        ("Content-Type", "multipart/x-mixed-replace;boundary=" + BOUNDARY),
        ("Cache-Control", "no-store"), _CORS, ("X-Framerate", str(s.max_fps or 30)),
    ], -1, False, req.version)
    await conn.send(head + _DELIM, deadline_in(s.write_timeout_ms))
    if req.method == "HEAD":
        return False
    last = 0
    sent_at = ticks_ms()
    while True:
        f = await src.next(last, s.capture_timeout_ms)
        if f is None:
            # No frame (camera timeouts): see whether the viewer is
            # still there, then keep waiting.
            _check_alive(conn)
            continue
        try:
            last = f.seq
            part = b"Content-Type: image/jpeg\r\nContent-Length: %d\r\nX-Timestamp: %d.%06d\r\nX-Frame-Seq: %d\r\n\r\n" % (
                f.n, f.ts[0], f.ts[1], f.seq)
            d = deadline_in(s.write_timeout_ms)
            try:
                await conn.send(part, d)
                await conn.send(f.data(), d)
                await conn.send(_TAIL, d)
            except Timeout:
                srv.stalled += 1
                raise
        finally:
            src.release(f)
        srv.stream_frames += 1
        if gap:
            wait = gap - ticks_diff(ticks_ms(), sent_at)
            if wait > 0:
                await sleep_ms(wait)
            sent_at = ticks_ms()


_DELIM = b"--" + BOUNDARY.encode() + b"\r\n"
_TAIL = b"\r\n" + _DELIM


def _check_alive(conn):
    """Raise Closed if the peer has gone (a read sees EOF)."""
    if conn.closed:
        raise Closed()
    try:
        if conn.n < len(conn.buf):
            conn.sock.recv_into(conn.mv[conn.n:], 1)
    except OSError as e:
        if not would_block(e):
            raise Closed()


async def status(srv, conn, req):
    cam = srv.camera
    src = srv.source
    pairs = cam.status_pairs()
    body = "{" + ",".join('"%s":%d' % kv for kv in pairs)
    extras = (
        ("fps", round(src.fps, 2)), ("frames", src.frames), ("timeouts", src.timeouts),
        ("stale_dropped", src.dropped),
        ("clients", srv.clients), ("stream_clients", srv.stream_clients), ("requests", srv.requests),
        ("stalled_dropped", srv.stalled), ("refused", srv.refused), ("evicted", srv.evicted),
        ("shed", srv.shed), ("mem_errors", srv.mem_errors + src.mem_errors),
        ("frame_buffers", len(src.buffers)), ("capture_errors", src.errors), ("capture_error", src.last_error),
        ("uptime_s", srv.uptime_s()), ("mem_free", mem_free()),
        ("width", _dim(cam, "width")), ("height", _dim(cam, "height")),
        ("camera", "ok" if cam.ok else "error"), ("error", cam.error),
        ("board", cam.board_id), ("pins", cam.pin_names),
        ("settings_error", "; ".join(srv.settings.errors)), ("max_clients", srv.settings.max_clients),
        ("settings_note", "; ".join(srv.settings.notes)),
        ("sensor", _sensor(cam)), ("firmware_version", VERSION),
    )
    for k, v in extras:
        body += ',"%s":%s' % (k, json.dumps(v))
    body += "}"
    return await send_body(srv, conn, req, body.encode(), "application/json")


def _dim(cam, attr):
    try:
        return int(getattr(cam.cam, attr))
    except Exception:
        return 0


def _sensor(cam):
    try:
        return str(cam.cam.sensor_name)
    except Exception:
        return ""


async def control(srv, conn, req):
    var = req.query.get("var")
    val = req.query.get("val")
    if var is None or val is None:
        return await send_error(srv, conn, req, 400, "want ?var=NAME&val=INT", req.keep_alive)
    try:
        n = int(val)
    except ValueError:
        return await send_error(srv, conn, req, 400, "val must be an integer", req.keep_alive)
    try:
        if var == "framesize":
            # Reinitialising swaps the driver's buffers, so the capture
            # task does it between two frames; this waits without
            # holding anyone up.
            size = srv.camera.frame_size_for(n)
            await srv.source.reconfigure(size, srv.settings.capture_timeout_ms)
        else:
            srv.camera.set_control(var, n)
    except ControlError as e:
        return await send_error(srv, conn, req, e.status, e.message, req.keep_alive)
    return await send_body(srv, conn, req, b"", "text/plain")


async def health(srv, conn, req):
    return await send_body(srv, conn, req, b"ok\n", "text/plain")


INDEX = b"""<!doctype html><html><head><meta charset="utf-8"><title>camserver</title></head>
<body style="font-family:sans-serif"><h1>camserver</h1><p><img src="/stream" style="max-width:100%"></p>
<p><a href="/capture">/capture</a> <a href="/status">/status</a> <a href="/health">/health</a></p></body></html>
"""


async def index(srv, conn, req):
    return await send_body(srv, conn, req, INDEX, "text/html")


ROUTES = {
    "/": index, "/capture": capture, "/jpg": capture, "/stream": stream, "/status": status,
    "/control": control, "/health": health,
}


async def dispatch(srv, conn, req):
    h = ROUTES.get(req.path)
    if h is None:
        return await send_error(srv, conn, req, 404, "no such endpoint", req.keep_alive)
    token = srv.settings.token
    if token and h is not health:
        auth = req.headers.get("authorization", "")
        if req.query.get("token") != token and auth != "Bearer " + token:
            return await send_error(srv, conn, req, 401, "token required", req.keep_alive)
    return await h(srv, conn, req)
