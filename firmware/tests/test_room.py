"""Who is closed when every client slot is taken and someone else
connects: the longest-idle keep-alive connection, else the slowest request
head, else a viewer stuck for stall_ms (1 s); never a viewer that keeps up."""

import socket
import time
import unittest

from harness import MJPEGReader, get, read_response, wait_for
from test_server import ServerTest


def closed_by_server(sock, within=2.0):
    """True if the server closes sock within `within` s (whatever it sent
    before), False if it stays open."""
    sock.settimeout(within)
    end = time.time() + within
    try:
        while time.time() < end:
            if sock.recv(65536) == b"":
                return True
    except socket.timeout:
        return False
    except OSError:
        return True  # reset
    return False


def status_of(viewer, timeout=10):
    """The HTTP status a viewer's /stream got, or None if none came."""
    wait_for(lambda: hasattr(viewer, "status") or viewer.closed.is_set(), timeout)
    return getattr(viewer, "status", None)


def get_status(fw):
    """GET /status on a new connection: the status code, or None if the
    connection was cut before one came."""
    try:
        return get(fw, "/status")[0]
    except (OSError, EOFError):
        return None


def send_stuck(fw, client):
    """True once the server's send to this client socket has stopped
    moving (its window is full)."""
    me = client.getsockname()
    for c in list(fw.server.conns):
        try:
            if c.sock._s.getpeername() == me:  # the socketpool shim's socket
                return c.blocked
        except OSError:
            pass
    return False


def silent(fw, n):
    """n connections that send nothing (yet)."""
    out = []
    for _ in range(n):
        out.append(fw.connect())
        time.sleep(0.02)  # distinct ages
    return out


class TestMakingRoom(ServerTest):
    fw_args = {"max_clients": 4, "stream_clients": 4}

    def test_longest_idle_keepalive_goes_first(self):
        idle = []
        for _ in range(2):
            c = self.fw.connect()
            c.sendall(b"GET /health HTTP/1.1\r\nHost: cam\r\n\r\n")
            self.assertEqual(read_response(c)[0], 200)
            idle.append(c)
            time.sleep(0.05)
        heads = silent(self.fw, 2)
        self.assertEqual(get(self.fw, "/status")[0], 200)  # the 5th client gets in
        self.assertTrue(closed_by_server(idle[0], 0.5), "the longest-idle connection stays")
        for c in [idle[1]] + heads:
            self.assertFalse(closed_by_server(c, 0.2))
        for c in idle + heads:
            c.close()

    def test_then_the_slowest_head(self):
        heads = silent(self.fw, 3)
        trickle = self.fw.connect()
        trickle.sendall(b"GET /sta")  # started, not finished
        time.sleep(0.05)
        self.assertEqual(get(self.fw, "/status")[0], 200)
        self.assertTrue(closed_by_server(heads[0], 0.5), "the head arriving longest stays")
        for c in heads[1:] + [trickle]:
            self.assertFalse(closed_by_server(c, 0.2))
        # Full again: the next newcomer takes the next oldest.
        heads += silent(self.fw, 1)
        self.assertEqual(get(self.fw, "/status")[0], 200)
        self.assertTrue(closed_by_server(heads[1], 0.5))
        for c in heads[2:] + [trickle]:
            self.assertFalse(closed_by_server(c, 0.2))
        for c in heads + [trickle]:
            c.close()

    def test_viewers_that_keep_up_are_safe_a_stuck_one_is_not(self):
        # Stuck for 3 s before it can be closed: long enough that "not yet"
        # below holds however slow the machine; and no write deadline
        # drops it first.
        self.fw.settings.stall_ms = 3000
        self.fw.settings.write_timeout_ms = 60000
        readers = [MJPEGReader(self.fw) for _ in range(3)]
        stuck = MJPEGReader(self.fw, read=False, rcvbuf=4096)
        self.assertTrue(wait_for(lambda: self.fw.server.stream_clients == 4 and all(r.parts for r in readers)
                                 and send_stuck(self.fw, stuck.sock)))
        # Nobody idle, no head pending, the stuck viewer not yet stuck
        # stall_ms: the newcomer is refused, and every viewer goes on.
        self.assertEqual(get(self.fw, "/status")[0], 503)
        # Once it has been stuck stall_ms, a newcomer takes its place.
        self.assertTrue(wait_for(lambda: get_status(self.fw) == 200, every=0.1),
                        "the stuck viewer was never closed to make room")
        self.assertEqual((self.fw.server.evicted, self.fw.server.stalled), (1, 0))
        self.assertTrue(closed_by_server(stuck.sock, 10))
        counts = [len(r.parts) for r in readers]
        wait_for(lambda: all(len(r.parts) > n + 3 or r.error for r, n in zip(readers, counts)))
        for r, n in zip(readers, counts):
            self.assertIsNone(r.error)
            self.assertGreater(len(r.parts), n + 3, "a viewer that keeps up stopped getting frames")
            r.close()
            r.join(2)
        stuck.close()

    def test_a_new_viewer_replaces_a_stuck_one(self):
        self.fw.settings.stream_clients = 2
        self.fw.settings.stall_ms = 3000  # "not yet" below holds however slow the machine
        self.fw.settings.write_timeout_ms = 60000  # and no write deadline drops it first
        reader = MJPEGReader(self.fw)
        stuck = MJPEGReader(self.fw, read=False, rcvbuf=4096)
        self.assertTrue(wait_for(lambda: self.fw.server.stream_clients == 2 and reader.parts
                                 and send_stuck(self.fw, stuck.sock)))
        late = MJPEGReader(self.fw)
        self.assertEqual(status_of(late), 503)  # the stuck one is not stuck long enough yet
        refused = [late]
        deadline = time.time() + 10
        while True:  # until the stuck one has been stuck stall_ms
            again = MJPEGReader(self.fw)
            if status_of(again) != 503 or time.time() > deadline:
                break
            refused.append(again)
            time.sleep(0.1)
        self.assertEqual(status_of(again), 200)
        self.assertEqual((self.fw.server.evicted, self.fw.server.stalled), (1, 0))
        self.assertTrue(wait_for(lambda: len(again.parts) > 5 or again.error), "the new viewer got no frames")
        self.assertGreater(len(again.parts), 5)
        self.assertTrue(closed_by_server(stuck.sock, 10))
        for r in [reader, again, stuck] + refused:
            r.close()
        reader.join(2)
        again.join(2)


if __name__ == "__main__":
    unittest.main()
