"""Who is closed when every client slot is taken and someone else
connects: the longest-idle keep-alive connection, else the slowest request
head, else a viewer stuck for a second; never a viewer that keeps up."""

import socket
import time
import unittest

from harness import MJPEGReader, get, read_response
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
        readers = [MJPEGReader(self.fw) for _ in range(3)]
        stuck = MJPEGReader(self.fw, read=False, rcvbuf=4096)
        time.sleep(0.3)
        # Nobody idle, no head pending, the stuck viewer not yet stuck a
        # second: the newcomer is refused, and every viewer goes on.
        self.assertEqual(get(self.fw, "/status")[0], 503)
        time.sleep(1.2)
        self.assertEqual(get(self.fw, "/status")[0], 200)
        self.assertTrue(closed_by_server(stuck.sock, 1.0))
        counts = [len(r.parts) for r in readers]
        time.sleep(0.5)
        for r, n in zip(readers, counts):
            self.assertIsNone(r.error)
            self.assertGreater(len(r.parts), n + 3, "a viewer that keeps up stopped getting frames")
            r.close()
            r.join(2)
        stuck.close()

    def test_a_new_viewer_replaces_a_stuck_one(self):
        self.fw.settings.stream_clients = 2
        reader = MJPEGReader(self.fw)
        stuck = MJPEGReader(self.fw, read=False, rcvbuf=4096)
        time.sleep(0.3)
        late = MJPEGReader(self.fw)
        late.join(2)
        self.assertEqual(late.status, 503)  # the stuck one is not stuck long enough yet
        time.sleep(1.2)
        again = MJPEGReader(self.fw)
        time.sleep(0.5)
        self.assertEqual(again.status, 200)
        self.assertGreater(len(again.parts), 5)
        self.assertTrue(closed_by_server(stuck.sock, 1.0))
        for r in (reader, again, late, stuck):
            r.close()
        reader.join(2)
        again.join(2)


if __name__ == "__main__":
    unittest.main()
