"""Host stand-in for CircuitPython's socketpool on ESP32 (see README.md).

The socket budget is lwIP's: CONFIG_LWIP_MAX_SOCKETS=8
(ports/espressif/esp-idf-config/sdkconfig.defaults) for every socket on
the board, user code's and CircuitPython's own. The web workflow
(supervisor/shared/web_workflow/web_workflow.c) starts when settings.toml
has CIRCUITPY_WIFI_SSID and CIRCUITPY_WEB_API_PASSWORD, and then holds its
listening socket, the connection it is serving (`active`) and a serial
websocket (websocket.c) from the same budget: WEB_WORKFLOW_SOCKETS, the
most it holds at once, are not user code's. It is read through os.getenv,
as the board reads settings.toml.
"""

import errno
import os as _os
import socket as _socket
import threading

# The ESP32's lwIP budget (CONFIG_LWIP_MAX_SOCKETS); tests may change it.
MAX_SOCKETS = 8
# Held by the web workflow when it runs: listener, request, websocket.
WEB_WORKFLOW_SOCKETS = 3
# Largest number of bytes one send() accepts, to exercise partial sends.
SEND_MAX = 5840
# lwIP's TCP send buffer is a few KB; a small one here makes a stalled
# reader fill it as quickly as on the board.
SEND_BUF = 8192

_lock = threading.Lock()
_open = 0


def _err(code):
    # MicroPython's OSError(code) has .errno == code; CPython needs two args.
    return OSError(code, _os.strerror(code))


def web_workflow_sockets():
    """Sockets the web workflow holds: it runs when settings.toml enables it."""
    if _os.getenv("CIRCUITPY_WIFI_SSID") and _os.getenv("CIRCUITPY_WEB_API_PASSWORD") is not None:
        return WEB_WORKFLOW_SOCKETS
    return 0


def open_count():
    """Sockets currently open through this pool (for leak checks)."""
    with _lock:
        return _open


def _take():
    global _open
    with _lock:
        if _open >= MAX_SOCKETS - web_workflow_sockets():
            return False
        _open += 1
        return True


def _give():
    global _open
    with _lock:
        _open -= 1


class SocketPool:
    AF_INET = _socket.AF_INET
    AF_INET6 = _socket.AF_INET6
    SOCK_STREAM = _socket.SOCK_STREAM
    SOCK_DGRAM = _socket.SOCK_DGRAM
    SOL_SOCKET = _socket.SOL_SOCKET
    SO_REUSEADDR = _socket.SO_REUSEADDR
    IPPROTO_TCP = _socket.IPPROTO_TCP
    TCP_NODELAY = _socket.TCP_NODELAY
    EAI_NONAME = -2

    def __init__(self, radio):
        self.radio = radio

    def socket(self, family=_socket.AF_INET, type=_socket.SOCK_STREAM, proto=0):
        if not _take():
            raise RuntimeError("Out of sockets")
        return Socket(_socket.socket(family, type, proto))

    def getaddrinfo(self, host, port, family=0, type=0, proto=0, flags=0):
        return _socket.getaddrinfo(host, port, family, type, proto, flags)


class Socket:
    def __init__(self, s):
        self._s = s
        self._timeout = None  # blocking
        self._closed = False
        s.setblocking(True)

    # CircuitPython has none of these.
    def __getattr__(self, name):
        if name in ("recv", "makefile", "fileno", "getpeername", "getsockname", "shutdown", "read", "write", "readinto"):
            raise AttributeError("'socket' object has no attribute '%s'" % name)
        raise AttributeError(name)

    def settimeout(self, t):
        self._timeout = t
        if t is None:
            self._s.setblocking(True)
        elif t == 0:
            self._s.setblocking(False)
        else:
            self._s.settimeout(t)

    def setblocking(self, flag):
        self.settimeout(None if flag else 0)

    def setsockopt(self, level, opt, value):
        self._s.setsockopt(level, opt, value)

    def bind(self, addr):
        self._s.bind(addr)

    def listen(self, backlog):
        try:
            self._s.listen(backlog)
        except OSError:
            pass  # the binding ignores failures

    def accept(self):
        try:
            conn, addr = self._s.accept()
        except (BlockingIOError, _socket.timeout):
            if self._timeout == 0:
                raise _err(errno.EAGAIN)
            raise _err(errno.ETIMEDOUT)
        if not _take():
            # lwIP could not allocate: the connection is dropped and it
            # looks like there was nothing to accept.
            conn.close()
            raise _err(errno.EAGAIN)
        conn.setsockopt(_socket.SOL_SOCKET, _socket.SO_SNDBUF, SEND_BUF)
        s = Socket(conn)
        s.setblocking(False)  # accepted sockets are O_NONBLOCK on ESP32
        return s, addr

    def connect(self, addr):
        self._s.connect(addr)

    def recv_into(self, buf, nbytes=0):
        if self._closed:
            raise _err(errno.EBADF)
        try:
            n = self._s.recv_into(buf, nbytes)
        except (BlockingIOError, _socket.timeout):
            raise _err(errno.EAGAIN if self._timeout == 0 else errno.ETIMEDOUT)
        except OSError:
            # Any other lwip_recv error (a reset, say) is reported as EAGAIN.
            raise _err(errno.EAGAIN)
        if n == 0 and (nbytes or len(buf)):
            raise _err(errno.ENOTCONN)  # EOF
        return n

    def send(self, data):
        if self._closed:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")
        was = self._s.gettimeout()
        self._s.setblocking(False)  # send never blocks on CircuitPython
        try:
            return self._s.send(memoryview(data)[:SEND_MAX])
        except BlockingIOError:
            raise _err(errno.EAGAIN)
        except BrokenPipeError:
            raise
        except ConnectionResetError:
            raise _err(errno.ECONNRESET)
        finally:
            self._s.settimeout(was)

    def sendall(self, data):
        mv = memoryview(data)
        while len(mv):
            n = self.send(mv)  # raises EAGAIN as soon as the buffer is full
            mv = mv[n:]

    def close(self):
        if not self._closed:
            self._closed = True
            self._s.close()
            _give()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
