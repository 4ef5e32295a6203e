"""One client connection over a non-blocking socketpool socket.

Nothing here ever blocks or spins: every would-block waits with a short
asyncio sleep, and every wait has a deadline, because on CircuitPython a
reset connection can look like "no data yet" forever.
"""

from .compat import sleep_ms, ticks_ms, ticks_diff, would_block

# Bytes per send() call: lwIP's send buffer is small, and yielding between
# chunks lets every other task run.
CHUNK = 8192


class Closed(Exception):
    """The peer went away (EOF, reset, broken pipe)."""


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

    async def fill(self, deadline):
        """Receive at least one more byte into buf before deadline (ticks)."""
        if self.n >= len(self.buf):
            raise ValueError("buffer full")
        idle = 0
        while True:
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
            return k

    def consume(self, k):
        """Drop the first k bytes of buf (a parsed request head)."""
        rest = self.n - k
        if rest > 0:
            self.buf[:rest] = self.buf[k:self.n]
        self.n = rest

    async def send(self, data, deadline):
        """Send all of data before deadline (ticks), yielding between chunks."""
        mv = memoryview(data)
        off = 0
        total = len(mv)
        while off < total:
            try:
                k = self.sock.send(mv[off:off + CHUNK])
            except OSError as e:
                if not would_block(e):
                    raise Closed()
                if ticks_diff(deadline, ticks_ms()) <= 0:
                    raise Timeout()
                await sleep_ms(2)
                continue
            off += k
            await sleep_ms(0)

    async def drain(self, ms):
        """Read and discard input for up to ms, so that closing right after
        an error response does not reset the connection (and lose the
        response) while the client is still sending."""
        from .compat import ticks_add
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
    from .compat import ticks_add
    return ticks_add(ticks_ms(), ms)
