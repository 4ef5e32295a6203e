"""One client connection over a non-blocking socketpool socket.

Nothing here ever blocks or spins: every would-block waits with a short
asyncio sleep, and every wait has a deadline, because on CircuitPython a
reset connection can look like "no data yet" forever.

A Conn also says what it is doing (state), so that the server can choose
whom to close when every slot is taken: see Server._victim.
"""

from .compat import sleep_ms, ticks_ms, ticks_add, ticks_diff, would_block

# Bytes per send() call: lwIP's send buffer is small, and yielding between
# chunks lets every other task run.
CHUNK = 8192

# What a connection is doing.
HEAD = "head"      # reading a request head (none of it yet, on a new connection)
IDLE = "idle"      # keep-alive, between requests
BUSY = "busy"      # a request being served: never closed to make room
STREAM = "stream"  # an MJPEG viewer


class Closed(Exception):
    """The peer went away (EOF, reset, broken pipe), or we closed it."""


class Timeout(Exception):
    """A deadline passed."""


class Conn:
    def __init__(self, sock, bufsize):
        self.sock = sock
        self.buf = bytearray(bufsize)
        self.mv = memoryview(self.buf)
        self.n = 0  # bytes of buf holding received, unconsumed data
        self.closed = False
        self.last_seq = 0  # the last frame /capture sent on this connection
        now = ticks_ms()
        self.state = HEAD
        self.since = now     # when state began (for HEAD on a new connection: accept)
        self.got = 0         # bytes of the current request head so far
        self.progress = now  # last time a send() moved bytes
        self.blocked = False  # the last send() would have blocked
        self.sent = 0        # bytes sent on this connection

    def enter(self, state):
        self.state = state
        self.since = ticks_ms()
        if state == HEAD or state == IDLE:
            self.got = 0

    async def fill(self, deadline):
        """Receive at least one more byte into buf before deadline (ticks)."""
        if self.n >= len(self.buf):
            raise ValueError("buffer full")
        idle = 0
        while True:
            if self.closed:
                raise Closed()
            try:
                k = self.sock.recv_into(self.mv[self.n:])
            except OSError as e:
                if not would_block(e):
                    raise Closed()
                if ticks_diff(deadline, ticks_ms()) <= 0:
                    raise Timeout()
                # Poll quickly at first, then back off: an idle keep-alive
                # connection costs almost nothing.
                await sleep_ms(1 if idle < 4 else 10)
                idle += 1
                continue
            if k == 0:  # CPython-style EOF
                raise Closed()
            self.n += k
            self.got += k
            return k

    def consume(self, k):
        """Drop the first k bytes of buf (a parsed request head)."""
        rest = self.n - k
        if rest > 0:
            self.buf[:rest] = self.buf[k:self.n]
        self.n = rest

    async def send(self, data, deadline):
        """Send all of data before deadline (ticks), yielding between
        chunks. data is sent as it is, never copied: pass a memoryview."""
        mv = memoryview(data)
        off = 0
        total = len(mv)
        while off < total:
            if self.closed:
                raise Closed()
            try:
                k = self.sock.send(mv[off:off + CHUNK])
            except OSError as e:
                if not would_block(e):
                    raise Closed()
                self.blocked = True
                if ticks_diff(deadline, ticks_ms()) <= 0:
                    raise Timeout()
                await sleep_ms(2)
                continue
            if k > 0:
                self.progress = ticks_ms()
                self.blocked = False
                self.sent += k
            off += k
            await sleep_ms(0)

    def stalled_for(self, now):
        """How long a send has been stuck, in ms (0 if none is)."""
        return ticks_diff(now, self.progress) if self.blocked else 0

    async def drain(self, ms):
        """Read and discard input for up to ms, so that closing right after
        an error response does not reset the connection (and lose the
        response) while the client is still sending."""
        deadline = ticks_add(ticks_ms(), ms)
        self.n = 0
        try:
            while True:
                await self.fill(deadline)
                self.n = 0
        except (Closed, Timeout):
            pass

    def close(self):
        if not self.closed:
            self.closed = True
            try:
                self.sock.close()
            except OSError:
                pass


def deadline_in(ms):
    return ticks_add(ticks_ms(), ms)
