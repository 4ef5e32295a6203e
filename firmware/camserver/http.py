"""HTTP/1.1 request parsing and responses, with hard limits on everything."""

from .compat import ticks_ms, ticks_add
from .conn import BUSY, HEAD, IDLE, Closed, Timeout

REASONS = {
    200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
    408: "Request Timeout", 413: "Payload Too Large", 414: "URI Too Long", 417: "Expectation Failed",
    431: "Request Header Fields Too Large", 500: "Internal Server Error", 501: "Not Implemented",
    503: "Service Unavailable", 505: "HTTP Version Not Supported",
}


class HTTPError(Exception):
    """A request the server answers with an error status and then closes."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


class Request:
    def __init__(self):
        self.method = ""
        self.path = ""
        self.query = {}
        self.version = "HTTP/1.1"
        self.headers = {}
        self.keep_alive = True


def _find_head_end(data):
    """Index just past the blank line ending the head, or -1."""
    i = data.find(b"\r\n\r\n")
    j = data.find(b"\n\n")
    if i >= 0 and (j < 0 or i + 2 <= j):
        return i + 4
    if j >= 0:
        return j + 2
    return -1


def unquote(s):
    """Percent-decode s; raise HTTPError(400) on a bad escape."""
    if "%" not in s and "+" not in s:
        return s
    s = s.replace("+", " ")
    parts = s.split("%")
    out = bytearray(parts[0].encode())
    for p in parts[1:]:
        if len(p) < 2:
            raise HTTPError(400, "bad percent-escape")
        try:
            out.append(int(p[:2], 16))
        except ValueError:
            raise HTTPError(400, "bad percent-escape")
        out.extend(p[2:].encode())
    try:
        return bytes(out).decode("utf-8")
    except UnicodeError:
        raise HTTPError(400, "bad UTF-8 in URL")


def parse_query(qs):
    q = {}
    for pair in qs.split("&"):
        if not pair:
            continue
        k, _, v = pair.partition("=")
        q[unquote(k)] = unquote(v)  # a repeated key: the last one wins
    return q


async def read_request(conn, s, wait_ms, first):
    """Read and parse one request head from conn.

    Waits up to wait_ms for the first byte (the keep-alive idle time), then
    the whole head must arrive within s.header_timeout_ms of its first byte,
    however slowly it trickles. Returns None if the client closed or idled
    out before sending anything; raises HTTPError for a bad request.
    Keeps conn.state current: HEAD while a head is arriving (from accept,
    on a new connection), IDLE between keep-alive requests, BUSY once the
    head is in.
    """
    deadline = ticks_add(ticks_ms(), wait_ms)
    started = conn.n > 0  # pipelined bytes already here
    if started:
        deadline = ticks_add(ticks_ms(), s.header_timeout_ms)
        conn.enter(HEAD)
        conn.got = conn.n
    elif not first:
        conn.enter(IDLE)
    while True:
        # bytes, not bytearray: MicroPython's bytearray lacks find/count.
        # The head is at most s.head_max (2 KB), so the copy is cheap.
        data = bytes(conn.mv[:conn.n])
        end = _find_head_end(data)
        if end >= 0:
            break
        _check_partial(data, s)
        if conn.n >= s.head_max:
            raise HTTPError(431, "request head too large")
        try:
            await conn.fill(deadline)
        except Timeout:
            if started:
                raise HTTPError(408, "request head not received in time")
            return None
        except Closed:
            if started:
                raise
            return None
        if not started:
            started = True
            deadline = ticks_add(ticks_ms(), s.header_timeout_ms)
            if conn.state == IDLE:
                conn.enter(HEAD)
                conn.got = conn.n
    head = data[:end]
    conn.consume(end)
    conn.enter(BUSY)
    return _parse(head, s)


def _check_partial(data, s):
    """Reject a request line or header count over the limit before the
    whole head has arrived."""
    nl = data.find(b"\n")
    if (nl < 0 and len(data) > s.line_max) or nl > s.line_max:
        raise HTTPError(414, "request line too long")
    if data.count(b"\n") > s.headers_max + 1:
        raise HTTPError(431, "too many headers")


def _parse(head, s):
    if b"\x00" in head:
        raise HTTPError(400, "NUL byte in request")
    try:
        text = head.decode("utf-8")
    except UnicodeError:
        raise HTTPError(400, "request head is not UTF-8")
    lines = text.split("\n")
    line = lines[0].rstrip("\r")
    if len(line) > s.line_max:
        raise HTTPError(414, "request line too long")
    parts = line.split(" ")
    if len(parts) != 3:
        raise HTTPError(400, "malformed request line")
    r = Request()
    r.method, target, r.version = parts
    if r.version not in ("HTTP/1.1", "HTTP/1.0"):
        if r.version.startswith("HTTP/"):
            raise HTTPError(505, "HTTP version not supported")
        raise HTTPError(400, "malformed request line")
    count = 0
    for raw in lines[1:]:
        raw = raw.rstrip("\r")
        if not raw:
            continue
        count += 1
        if count > s.headers_max:
            raise HTTPError(431, "too many headers")
        name, sep, value = raw.partition(":")
        if not sep or not name or name != name.strip():
            raise HTTPError(400, "malformed header line")
        r.headers[name.lower()] = value.strip()
    if target.startswith("http://") or target.startswith("https://"):
        slash = target.find("/", target.find("//") + 2)
        target = target[slash:] if slash >= 0 else "/"
    if not target.startswith("/"):
        raise HTTPError(400, "bad request target")
    path, _, qs = target.partition("?")
    r.path = unquote(path)
    r.query = parse_query(qs)
    conn_hdr = r.headers.get("connection", "").lower()
    if r.version == "HTTP/1.0":
        r.keep_alive = "keep-alive" in conn_hdr
    else:
        r.keep_alive = "close" not in conn_hdr
    if r.method not in ("GET", "HEAD"):
        raise HTTPError(405, "only GET and HEAD")
    if "transfer-encoding" in r.headers:
        raise HTTPError(501, "request bodies are not supported")
    cl = r.headers.get("content-length", "0")
    if cl not in ("", "0"):
        raise HTTPError(413, "request bodies are not supported")
    if r.headers.get("expect", "").lower() == "100-continue":
        raise HTTPError(417, "no request bodies, so no 100-continue")
    return r


def response_head(status, headers, length, keep_alive, version="HTTP/1.1"):
    """The status line and headers as bytes. length < 0 means none."""
    out = ["%s %d %s\r\n" % (version, status, REASONS.get(status, "Unknown"))]
    for k, v in headers:
        out.append("%s: %s\r\n" % (k, v))
    if length >= 0:
        out.append("Content-Length: %d\r\n" % length)
    out.append("Connection: %s\r\n\r\n" % ("keep-alive" if keep_alive else "close"))
    return "".join(out).encode()


def error_body(status, message):
    return ("%d %s: %s\n" % (status, REASONS.get(status, ""), message)).encode()
