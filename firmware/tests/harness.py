"""Runs the real firmware in a background thread for the tests, on
127.0.0.1 with the shims, and gives the tests raw-socket clients."""

import asyncio
import contextlib
import io
import os
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
for p in (os.path.join(HERE, "shims"), os.path.dirname(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

import espcamera  # noqa: E402  (shim)
import shimboards  # noqa: E402  (shim)
import socketpool  # noqa: E402  (shim)
import wifi  # noqa: E402  (shim)

from camserver import config  # noqa: E402
from camserver.app import App  # noqa: E402

TESTDATA = os.path.join(HERE, "testdata")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Firmware:
    """The firmware running in its own thread and event loop."""

    def __init__(self, fps=30, size="QVGA", board=shimboards.DEFAULT, frame_kb=0, init_failures=0, **settings):
        shimboards.use(board)  # a fresh boot: every pin free
        espcamera.FPS = fps
        espcamera.PAD_TO = frame_kb * 1024
        espcamera.INIT_FAILURES = init_failures
        espcamera.live_camera = None
        espcamera.hard_fault = None
        s = config.Settings()
        s.port = free_port()
        s.frame_size = size
        for k, v in settings.items():
            if not hasattr(s, k):
                raise AttributeError(k)
            setattr(s, k, v)
        self.settings = s
        self.base_sockets = socketpool.open_count()
        self.console = io.StringIO()  # what the board prints on its serial console
        with contextlib.redirect_stdout(self.console):
            self.app = App(s, socketpool.SocketPool(wifi.radio), host="127.0.0.1")
        self.loop = asyncio.new_event_loop()
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        deadline = time.time() + 5
        while self.app.server.sock is None and time.time() < deadline:
            time.sleep(0.01)
        self.port = s.port

    def _run(self):
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.app.run())
            # Connections still open when the test stopped the server.
            rest = asyncio.all_tasks(self.loop)
            for t in rest:
                t.cancel()
            self.loop.run_until_complete(asyncio.gather(*rest, return_exceptions=True))
        except BaseException as e:  # pragma: no cover  (espcamera.HardFault too)
            self.error = e
        finally:
            self.loop.close()

    def stop(self):
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.app.stop)
        self.thread.join(5)
        if self.app.camera.cam is not None:
            self.app.camera.cam.deinit()
        check_no_hard_fault()

    def call(self, fn):
        """Run fn() on the firmware's loop and return its result."""
        async def wrap():
            return fn()
        return asyncio.run_coroutine_threadsafe(wrap(), self.loop).result(5)

    def task_count(self):
        return self.call(lambda: len(asyncio.all_tasks(self.loop)))

    @property
    def server(self):
        return self.app.server

    def connect(self, rcvbuf=None):
        return connect(self.port, rcvbuf)

    def wait_idle(self, timeout=8):
        """Wait until no client connection is open and the socket count is
        back to the listener alone; return True if it got there."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.server.clients == 0 and socketpool.open_count() == self.base_sockets + 1:
                return True
            time.sleep(0.05)
        return False


def wait_for(cond, timeout=10, every=0.02):
    """Call cond() until it returns something true or `timeout` s have
    passed; return its last result. For waiting on what must happen
    eventually: assert on the result, not on how long it took."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(every)


def check_no_hard_fault():
    """Fail the test if the board would have hard-faulted (espcamera shim)."""
    if espcamera.hard_fault is not None:
        msg, espcamera.hard_fault = espcamera.hard_fault, None
        raise AssertionError(msg)


def connect(port, rcvbuf=None):
    c = socket.socket()
    try:
        if rcvbuf:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        c.settimeout(10)
        c.connect(("127.0.0.1", port))
    except OSError:
        c.close()
        raise
    return c


def read_response(sock, head_only=False):
    """Read one HTTP response: (status, headers dict, body)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise EOFError("closed before response head: %r" % buf)
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0"))
    if head_only:
        n = 0
    while len(rest) < n:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("closed in body")
        rest += chunk
    return status, headers, rest[:n]


def get(fw, path, headers="", sock=None):
    """One request on a new (or given) connection."""
    own = sock is None
    if own:
        sock = fw.connect()
    try:
        sock.sendall(("GET %s HTTP/1.1\r\nHost: cam\r\n%s\r\n" % (path, headers)).encode())
        return read_response(sock)
    finally:
        if own:
            sock.close()


class MJPEGReader(threading.Thread):
    """A /stream viewer that reads parts as fast as it can (or not at all)."""

    def __init__(self, fw, path="/stream", read=True, rcvbuf=None):
        super().__init__(daemon=True)
        self.sock = fw.connect(rcvbuf=rcvbuf)
        self.sock.sendall(("GET %s HTTP/1.1\r\nHost: cam\r\n\r\n" % path).encode())
        self.read = read
        self.parts = []  # (seq, jpeg)
        self.times = []
        self.error = None
        self.closed = threading.Event()
        self._halt = False
        if read:
            self.start()

    def run(self):
        buf = b""
        try:
            while b"\r\n\r\n" not in buf:
                buf += self._recv()
            head, _, buf = buf.partition(b"\r\n\r\n")
            self.status = int(head.split(b" ")[1])
            while not self._halt:
                while b"\r\n\r\n" not in buf:
                    buf += self._recv()
                hdrs, _, buf = buf.partition(b"\r\n\r\n")
                fields = {}
                for line in hdrs.split(b"\r\n"):
                    k, _, v = line.partition(b":")
                    fields[k.strip().lower()] = v.strip()
                n = int(fields[b"content-length"])
                while len(buf) < n:
                    buf += self._recv()
                jpeg, buf = buf[:n], buf[n:]
                self.parts.append((int(fields[b"x-frame-seq"]), jpeg))
                self.times.append(time.time())
        except (EOFError, OSError) as e:
            self.error = e
        finally:
            self.closed.set()

    def _recv(self):
        b = self.sock.recv(65536)
        if not b:
            raise EOFError("stream closed")
        return b

    def fps(self, since):
        n = len([t for t in self.times if t >= since])
        return n / max(1e-6, time.time() - since)

    def close(self):
        self._halt = True
        try:
            self.sock.close()
        except OSError:
            pass


CODE_PY = os.path.join(os.path.dirname(HERE), "code.py")


def parse_settings_toml(text):
    """settings.toml as CircuitPython's os.getenv reads it: key = "str" or int."""
    import tomllib
    return tomllib.loads(text)


class Boot:
    """code.py itself, started as the board would start it: a fresh VM on
    board_id (every pin free, camserver imported anew), settings.toml read
    through os.getenv, the serial console captured. hide names modules this
    CircuitPython build lacks (e.g. espcamera on an 8.0 beta). With
    wait=False it returns at once, without waiting for the server."""

    def __init__(self, board_id, settings_toml, hide=(), init_failures=0, wait=True):
        import esp32_camera  # noqa: F401  (loaded while espcamera is still importable)
        for name in list(sys.modules):
            if name == "camserver" or name.startswith("camserver."):
                del sys.modules[name]
        shimboards.use(board_id)
        espcamera.live_camera = None
        espcamera.hard_fault = None
        espcamera.INIT_FAILURES = init_failures
        espcamera.PAD_TO = 0
        self.hidden = dict((m, sys.modules.get(m)) for m in hide)
        for m in hide:
            sys.modules[m] = None  # import raises ImportError
        self.env = parse_settings_toml(settings_toml)
        self.port = self.env["CAMSERVER_PORT"]
        self._getenv = os.getenv
        os.getenv = lambda key, default=None: self.env.get(key, default)
        wifi._boot()  # connected at boot if settings.toml names a network
        self.console = io.StringIO()
        self._redirect = contextlib.redirect_stdout(self.console)
        self._redirect.__enter__()
        self.globals = {"__name__": "__main__", "__file__": CODE_PY}
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not wait:
            return
        self.wait()

    def wait(self, timeout=10):
        """Until code.py has its server listening."""
        deadline = time.time() + timeout
        while time.time() < deadline and self.error is None:
            app = self.globals.get("app")
            if app is not None and app.server.sock is not None:
                break
            time.sleep(0.01)
        else:
            self.stop()
            raise RuntimeError("code.py did not start: %r\n%s" % (self.error, self.console.getvalue()))
        self.app = self.globals["app"]

    def _run(self):
        try:
            with open(CODE_PY) as f:
                exec(compile(f.read(), CODE_PY, "exec"), self.globals)
        except BaseException as e:  # SystemExit from supervisor.reload() too
            self.error = e

    def stop(self):
        app = self.globals.get("app")
        if app is not None:
            app.stop()
        self.thread.join(10)
        self._redirect.__exit__(None, None, None)
        os.getenv = self._getenv
        for m, mod in self.hidden.items():
            if mod is None:
                sys.modules.pop(m, None)
            else:
                sys.modules[m] = mod
        cam = espcamera.live_camera
        if cam is not None:
            cam.deinit()
        check_no_hard_fault()

    def connect(self, rcvbuf=None):
        return connect(self.port, rcvbuf)


HOSTSIM = os.path.join(os.path.dirname(HERE), "hostsim.py")


class HostSim:
    """firmware/hostsim.py in a process of its own (its own interpreter
    lock, like the board's own CPU), as camd's end-to-end tests run it."""

    def __init__(self, *args, env=None):
        import subprocess
        self.port = free_port()
        cmd = [sys.executable, HOSTSIM, "--port", str(self.port)] + [str(a) for a in args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env=dict(os.environ, **(env or {})))
        self.output = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.time() + 15
        while time.time() < deadline:
            try:
                if get(self, "/health")[0] == 200:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("hostsim did not start:\n" + "".join(self.output))

    def _read(self):
        for line in iter(self.proc.stdout.readline, b""):
            self.output.append(line.decode(errors="replace"))

    def alive(self):
        return self.proc.poll() is None

    def connect(self, rcvbuf=None):
        return connect(self.port, rcvbuf)

    def status(self):
        import json
        return json.loads(get(self, "/status")[2])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        self.proc.stdout.close()


class Slowloris(threading.Thread):
    """Sends a request head one byte every `every` seconds, forever;
    reconnects whenever the server cuts it off."""

    def __init__(self, target, every=0.1):
        super().__init__(daemon=True)
        self.target, self.every = target, every
        self.connects = 0
        self._halt = threading.Event()
        self.start()

    def run(self):
        head = b"GET /status HTTP/1.1\r\nHost: cam\r\nX-Slow: " + b"a" * 100000
        while not self._halt.is_set():
            try:
                c = self.target.connect()
            except OSError:
                time.sleep(self.every)
                continue
            self.connects += 1
            c.setblocking(False)
            try:
                for i in range(len(head)):
                    if self._halt.wait(self.every):
                        break
                    try:
                        if c.recv(4096) == b"":
                            break  # cut off (a 408/503 read or not): start over
                    except BlockingIOError:
                        pass
                    c.send(head[i:i + 1])
            except OSError:
                pass
            finally:
                c.close()

    def stop(self):
        self._halt.set()
        self.join(5)
