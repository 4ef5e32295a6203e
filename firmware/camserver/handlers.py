"""The endpoints. Each is a coroutine that writes its response to the
connection and returns whether the connection may be kept alive."""

import json

from . import VERSION
from .camera import ControlError
from .compat import mem_free, ticks_ms, ticks_diff, sleep_ms
from .conn import deadline_in, Closed, Timeout
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
    elif len(body) <= 1024:
        await conn.send(head + body, d)  # one segment
    else:
        await conn.send(head, d)
        await conn.send(body, d)  # a frame: not copied
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
    if src.frame is not None and src.seq > conn.last_seq:
        if req.query.get("fresh") == "0" or ticks_diff(ticks_ms(), src.ticks) <= FRESH_MS:
            after = src.seq - 1
    got = await src.next(after, srv.settings.capture_timeout_ms)
    if got is None:
        return await send_error(srv, conn, req, 503, "camera timeout: no frame", req.keep_alive)
    frame, seq, ts = got
    conn.last_seq = seq
    srv.captures += 1
    return await send_body(srv, conn, req, frame, "image/jpeg", (
        ("Content-Disposition", "inline; filename=capture.jpg"),
        ("X-Timestamp", "%d.%06d" % ts),
        ("X-Frame-Seq", str(seq)),
    ))


async def stream(srv, conn, req):
    """MJPEG, ESPHome-style framing: no chunking, the boundary after each
    part. A viewer gets the newest frame each time it is ready for one."""
    s = srv.settings
    if not srv.camera.ok:
        return await send_error(srv, conn, req, 503, srv.camera.error)
    if srv.stream_clients >= s.stream_clients:
        return await send_error(srv, conn, req, 503, "too many stream viewers (%d)" % s.stream_clients)
    gap = 0
    try:
        fps = int(req.query.get("fps", "0"))
        if fps > 0:
            gap = 1000 // fps
    except ValueError:
        return await send_error(srv, conn, req, 400, "fps must be an integer")
    srv.stream_clients += 1
    try:
        head = response_head(200, [
            ("Content-Type", "multipart/x-mixed-replace;boundary=" + BOUNDARY),
            ("Cache-Control", "no-store"), _CORS, ("X-Framerate", str(s.max_fps or 30)),
        ], -1, False, req.version)
        await conn.send(head + b"--" + BOUNDARY.encode() + b"\r\n", deadline_in(s.write_timeout_ms))
        if req.method == "HEAD":
            return False
        last = 0
        sent_at = ticks_ms()
        tail = b"\r\n--" + BOUNDARY.encode() + b"\r\n"
        while True:
            got = await srv.source.next(last, s.capture_timeout_ms)
            if got is None:
                # No frame (camera timeouts): see whether the viewer is
                # still there, then keep waiting.
                await _check_alive(conn)
                continue
            frame, seq, ts = got
            last = seq
            part = b"Content-Type: image/jpeg\r\nContent-Length: %d\r\nX-Timestamp: %d.%06d\r\nX-Frame-Seq: %d\r\n\r\n" % (
                len(frame), ts[0], ts[1], seq)
            d = deadline_in(s.write_timeout_ms)
            try:
                await conn.send(part, d)
                await conn.send(frame, d)
                await conn.send(tail, d)
            except Timeout:
                srv.stalled += 1
                raise
            srv.stream_frames += 1
            if gap:
                wait = gap - ticks_diff(ticks_ms(), sent_at)
                if wait > 0:
                    await sleep_ms(wait)
                sent_at = ticks_ms()
    finally:
        srv.stream_clients -= 1


async def _check_alive(conn):
    """Raise Closed if the peer has gone (a read sees EOF)."""
    try:
        conn.sock.recv_into(conn.mv[conn.n:], 1) if conn.n < len(conn.buf) else None
    except OSError as e:
        from .compat import would_block
        if not would_block(e):
            raise Closed()


async def status(srv, conn, req):
    cam = srv.camera
    src = srv.source
    pairs = cam.status_pairs()
    body = "{" + ",".join('"%s":%d' % kv for kv in pairs)
    extras = (
        ("fps", round(src.fps, 2)), ("frames", src.frames), ("timeouts", src.timeouts),
        ("clients", srv.clients), ("stream_clients", srv.stream_clients), ("requests", srv.requests),
        ("stalled_dropped", srv.stalled), ("refused", srv.refused),
        ("uptime_s", ticks_diff(ticks_ms(), srv.started) // 1000), ("mem_free", mem_free()),
        ("width", _dim(cam, "width")), ("height", _dim(cam, "height")),
        ("camera", "ok" if cam.ok else "error"), ("error", cam.error),
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
            # Reconfiguring swaps the driver's buffers: never while a
            # take() is in progress.
            async with srv.source.lock:
                srv.camera.reconfigure_size(n)
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
