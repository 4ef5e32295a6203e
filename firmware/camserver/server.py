"""The accept loop, the per-connection task, and who gets a slot.

Every client slot can be taken by someone who is not really using it: an
idle keep-alive connection, a client trickling its request head
(slowloris), a viewer that stopped reading. So when all max_clients slots
are taken and another client connects, the server makes room instead of
refusing (_victim): it closes the longest-idle keep-alive connection; else
the slowest client still sending its request head (the one that has been
at it longest; the newcomer is always the newest); else a stream viewer
whose sends have not moved for stall_ms (1 s). A request being served, and a
viewer that is keeping up, are never closed for this. Only when nobody
qualifies does the newcomer get 503.

Memory can run out under load. Every allocation here that can fail is
guarded: the failing request gets 503 (or just the close, if part of its
response went out), the newest stream viewer is shed when frame buffers
cannot be had, and the loops go on.
"""

import asyncio
import gc

from .compat import sleep_ms, ticks_ms, ticks_diff, would_block
from .conn import BUSY, HEAD, IDLE, STREAM, Conn, Closed, Timeout
from .http import HTTPError, read_request, response_head
from . import handlers

# Sent to a connection we cannot take, in one non-blocking send. Made at
# import, so that sending it needs no memory.
_BUSY = response_head(503, [("Content-Type", "text/plain"), ("Retry-After", "1")], 19, False) + b"503 server is busy\n"


class Server:
    def __init__(self, pool, settings, source, camera, host="0.0.0.0"):
        self.pool = pool
        self.settings = settings
        self.source = source
        self.camera = camera
        self.host = host
        self.sock = None
        self.conns = []    # every open client connection, in accept order
        self.requests = 0
        self.captures = 0
        self.stream_frames = 0
        self.stalled = 0   # viewers dropped at the write deadline
        self.refused = 0   # connections turned away with 503
        self.evicted = 0   # connections closed to make room for another
        self.shed = 0      # stream viewers closed because memory ran short
        self.mem_errors = 0
        self._up_s = 0
        self._up_ms = 0
        self._up_t = ticks_ms()
        self._stop = False
        source.on_pressure = self.shed_viewer

    @property
    def clients(self):
        return len(self.conns)

    @property
    def stream_clients(self):
        n = 0
        for c in self.conns:
            if c.state == STREAM:
                n += 1
        return n

    def uptime_s(self):
        """Seconds since start, by adding up small tick differences:
        ticks_ms() wraps every 2**29 ms (6.2 days) and a single difference
        is only right up to half that, so uptime cannot be one difference
        from the start. The accept loop calls this every few ms. (Whole
        seconds and a remainder: both stay small ints, which on
        CircuitPython need no allocation.)"""
        now = ticks_ms()
        ms = self._up_ms + ticks_diff(now, self._up_t)
        self._up_t = now
        self._up_s += ms // 1000
        self._up_ms = ms % 1000
        return self._up_s

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
                await self._accept()
            except MemoryError:
                self._memory_short()
                await sleep_ms(20)
        self.sock.close()

    async def _accept(self):
        self.uptime_s()
        try:
            c, _ = self.sock.accept()
        except OSError as e:
            # EAGAIN: nobody is connecting (or lwIP had no socket for
            # them). Never spin: sleep a little.
            await sleep_ms(5 if would_block(e) else 50)
            return
        except RuntimeError:  # "Out of sockets"
            await sleep_ms(100)
            return
        try:
            self._admit(c)
        except Exception as e:  # a bug: lose this connection, not the server
            print("camserver: accept:", repr(e))
            self._refuse(c)
        # Straight on to the next one: the listen backlog is tiny, and a
        # client whose SYN finds it full waits a second to retry.
        await sleep_ms(0)

    def _admit(self, sock):
        if len(self.conns) >= self.settings.max_clients:
            victim = self._victim(ticks_ms())
            if victim is None:
                self.refused += 1
                self._refuse(sock)
                return
            self.evicted += 1
            self.drop(victim)
        conn = None
        try:
            conn = Conn(sock, self.settings.head_max)
            self.conns.append(conn)
            asyncio.create_task(self._serve(conn))
        except MemoryError:
            if conn is not None and conn in self.conns:
                self.conns.remove(conn)
            self.refused += 1
            self._refuse(sock)
            self._memory_short()

    def _victim(self, now):
        """The connection to close so that a new one can come in, or None."""
        idle = slow = None
        for c in self.conns:
            if c.state == IDLE:
                if idle is None or ticks_diff(c.since, idle.since) < 0:
                    idle = c
            elif c.state == HEAD:
                # Slowest first: the head that has been arriving longest.
                # A real client sends its head at once; a silent or
                # trickling one (slowloris) sits here.
                if slow is None or ticks_diff(c.since, slow.since) < 0:
                    slow = c
        return idle or slow or self.stalled_viewer(now)

    def stalled_viewer(self, now):
        """The stream viewer whose send has been stuck longest, if that is
        at least settings.stall_ms; else None."""
        stall_ms = self.settings.stall_ms
        worst, worst_for = None, 0
        for c in self.conns:
            if c.state == STREAM:
                t = c.stalled_for(now)
                if t >= stall_ms and t > worst_for:
                    worst, worst_for = c, t
        return worst

    def shed_viewer(self):
        """Memory ran short: close the newest stream viewer, which gives
        back the frame buffer it holds."""
        newest = None
        for c in self.conns:  # in accept order: the later one wins a tie
            if c.state == STREAM and (newest is None or ticks_diff(c.since, newest.since) >= 0):
                newest = c
        if newest is not None:
            self.shed += 1
            self.drop(newest)

    def drop(self, conn):
        """Close conn now; its task notices at its next step and ends."""
        conn.close()
        if conn in self.conns:
            self.conns.remove(conn)

    def _refuse(self, sock):
        try:
            sock.setblocking(False)
            sock.send(_BUSY)
        except OSError:
            pass
        try:
            sock.close()
        except OSError:
            pass

    def _memory_short(self):
        self.mem_errors += 1
        gc.collect()

    async def _serve(self, conn):
        s = self.settings
        sock = conn.sock
        sent_before = 0
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
            first = True
            for _ in range(1000):  # requests per connection
                req = None
                try:
                    req = await read_request(conn, s, wait, first)
                except HTTPError as e:
                    await handlers.send_error(self, conn, None, e.status, e.message)
                    await conn.drain(200)
                    break
                if req is None:
                    break
                first = False
                self.requests += 1
                sent_before = conn.sent
                keep = await handlers.dispatch(self, conn, req)
                if not keep or not req.keep_alive:
                    break
                wait = s.idle_timeout_ms
        except (Closed, Timeout):
            pass
        except MemoryError:
            self._memory_short()
            if conn.state == BUSY and conn.sent == sent_before and not conn.closed:
                try:
                    sock.send(_BUSY)  # nothing of the response went out: say why
                except OSError:
                    pass
        except Exception as e:  # a bug: log it, lose only this connection
            print("camserver: connection error:", repr(e))
        finally:
            self.drop(conn)

    def stop(self):
        self._stop = True
