"""The accept loop and the per-connection task."""

import asyncio

from .compat import sleep_ms, ticks_ms, would_block
from .conn import Conn, Closed, Timeout
from .http import HTTPError, read_request, response_head
from . import handlers

# Sent to a connection over the client cap, in one non-blocking send.
_BUSY = response_head(503, [("Content-Type", "text/plain"), ("Retry-After", "1")], 19, False) + b"503 server is busy\n"


class Server:
    def __init__(self, pool, settings, source, camera, host="0.0.0.0"):
        self.pool = pool
        self.settings = settings
        self.source = source
        self.camera = camera
        self.host = host
        self.sock = None
        self.clients = 0
        self.stream_clients = 0
        self.requests = 0
        self.captures = 0
        self.stream_frames = 0
        self.stalled = 0   # viewers dropped at the write deadline
        self.refused = 0   # connections over max_clients
        self.started = ticks_ms()
        self._stop = False

    def listen(self):
        p = self.pool
        s = p.socket(p.AF_INET, p.SOCK_STREAM)
        s.setsockopt(p.SOL_SOCKET, p.SO_REUSEADDR, 1)
        s.bind((self.host, self.settings.port))
        s.listen(2)  # a small backlog: sockets are scarce
        s.setblocking(False)
        self.sock = s

    async def run(self):
        if self.sock is None:
            self.listen()
        while not self._stop:
            try:
                c, _ = self.sock.accept()
            except OSError as e:
                # EAGAIN: nobody is connecting (or lwIP had no socket for
                # them). Never spin: sleep a little.
                await sleep_ms(5 if would_block(e) else 50)
                continue
            except RuntimeError:  # "Out of sockets"
                await sleep_ms(100)
                continue
            if self.clients >= self.settings.max_clients:
                self.refused += 1
                try:
                    c.setblocking(False)
                    c.send(_BUSY)
                except OSError:
                    pass
                c.close()
                continue
            self.clients += 1
            asyncio.create_task(self._serve(c))
        self.sock.close()

    async def _serve(self, sock):
        s = self.settings
        conn = Conn(sock, s.head_max)
        try:
            sock.setblocking(False)
            try:
                # Responses go out in a few writes; without this each
                # small tail waits for the client's delayed ACK (~40 ms).
                sock.setsockopt(self.pool.IPPROTO_TCP, self.pool.TCP_NODELAY, 1)
            except (OSError, AttributeError):
                pass
            # The first request must start within 5 s of accepting.
            wait = s.header_timeout_ms + 2000
            for _ in range(1000):  # requests per connection
                req = None
                try:
                    req = await read_request(conn, s, wait)
                except HTTPError as e:
                    await handlers.send_error(self, conn, None, e.status, e.message)
                    await conn.drain(200)
                    break
                if req is None:
                    break
                self.requests += 1
                keep = await handlers.dispatch(self, conn, req)
                if not keep or not req.keep_alive:
                    break
                wait = s.idle_timeout_ms
        except (Closed, Timeout):
            pass
        except Exception as e:  # a bug: log it, lose only this connection
            print("camserver: connection error:", repr(e))
        finally:
            conn.close()
            self.clients -= 1

    def stop(self):
        self._stop = True
