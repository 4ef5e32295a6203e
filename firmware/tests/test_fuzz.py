"""Garbage in, an HTTP answer out: mutated requests (a fixed seed, so a
failure reproduces) never reach the server's "a bug" path.

The parser must answer every head with a Request or an HTTPError; the
running server must answer every request with a status line (or close a
connection whose head never ended), log no connection error, and still
serve /status afterwards. No PyPI here, so the mutator is our own: byte
flips, inserts, deletions, splices of the seeds and of HTTP's special
characters.
"""

import contextlib
import io
import random
import socket
import unittest

from harness import Firmware, get
from camserver import config
from camserver.http import REASONS, HTTPError, _parse, parse_query, unquote

SEEDS = [
    b"GET /capture HTTP/1.1\r\nHost: cam\r\n\r\n",
    b"GET /status HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"HEAD /stream HTTP/1.1\r\nAccept: */*\r\n\r\n",
    b"GET /control?var=framesize&val=5 HTTP/1.1\r\n\r\n",
    b"GET /control?var=quality&val=12 HTTP/1.1\r\n\r\n",
    b"GET /control?var=brightness&val=-2 HTTP/1.1\r\n\r\n",
    b"GET /capture?_cb=1&token=abc HTTP/1.1\r\nAuthorization: Bearer x\r\n\r\n",
    b"GET http://cam.local/health?q=%41%zz+b HTTP/1.1\r\n\r\n",
    b"GET /stream?fps=5 HTTP/1.1\r\nConnection: close\r\n\r\n",
]
SPECIAL = [b"\r\n", b"\n", b" ", b"%", b"?", b"&", b"=", b":", b"/", b"\x00", b"\xff", b"%0", b"%c3%28",
           b"HTTP/1.1", b"HTTP/2", b"-1", b"99999999999999999999", b"+", b"..", b"\t"]


def mutate(rng, data):
    data = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        op = rng.randrange(5)
        at = rng.randint(0, len(data))
        if op == 0 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif op == 1:
            data[at:at] = rng.choice(SPECIAL)
        elif op == 2 and data:
            del data[at:at + rng.randint(1, 8)]
        elif op == 3:
            other = rng.choice(SEEDS)
            i = rng.randint(0, len(other))
            data[at:] = other[i:]
        else:
            data[at:at] = bytes(rng.randrange(32, 127) for _ in range(rng.randint(1, 12)))
    return bytes(data)


class TestParserFuzz(unittest.TestCase):
    def test_every_head_is_a_request_or_an_http_error(self):
        s = config.Settings()
        rng = random.Random(1)
        for i in range(30000):
            data = mutate(rng, rng.choice(SEEDS))
            try:
                r = _parse(data, s)
            except HTTPError as e:
                self.assertIn(e.status, REASONS, data)
                self.assertTrue(e.message, data)
                continue
            except Exception as e:  # noqa: BLE001  (the point of the test)
                self.fail("head %r: %r" % (data, e))
            self.assertIn(r.method, ("GET", "HEAD"))
            self.assertTrue(r.path.startswith("/"), data)

    def test_query_and_escapes(self):
        rng = random.Random(2)
        alphabet = "%&=+?/ abcAZ09\u00e9\x00"
        for _ in range(20000):
            text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 16)))
            for fn in (unquote, parse_query):
                try:
                    fn(text)
                except HTTPError as e:
                    self.assertEqual(e.status, 400, text)
                except Exception as e:  # noqa: BLE001
                    self.fail("%s(%r): %r" % (fn.__name__, text, e))


class TestServerFuzz(unittest.TestCase):
    def test_server_answers_garbage_and_keeps_serving(self):
        fw = Firmware(idle_timeout_ms=300, header_timeout_ms=300)
        out = io.StringIO()
        try:
            rng = random.Random(3)
            with contextlib.redirect_stdout(out):  # the board's console, from its thread too
                for i in range(300):
                    data = mutate(rng, rng.choice(SEEDS))
                    ended = b"\n\n" in data or b"\r\n\r\n" in data
                    resp = self.send(fw, data, ended)
                    if ended and not data.startswith(b"HEAD"):
                        self.assertTrue(resp.startswith(b"HTTP/1."), "request %d %r got %r" % (i, data, resp[:80]))
                    if i % 50 == 0:
                        self.assertEqual(get(fw, "/status")[0], 200)
            self.assertNotIn("connection error", out.getvalue())
            self.assertEqual(get(fw, "/status")[0], 200)
        finally:
            fw.stop()
        self.assertIsNone(fw.error)

    @staticmethod
    def send(fw, data, read):
        """Sends data and, if read, reads the start of the answer (a
        stream never ends: the first bytes say enough)."""
        c = fw.connect()
        c.settimeout(5)
        got = b""
        try:
            c.sendall(data)
            while read and len(got) < 16:
                chunk = c.recv(4096)
                if not chunk:
                    break
                got += chunk
        except (socket.timeout, ConnectionError):
            pass
        finally:
            c.close()
        return got


if __name__ == "__main__":
    unittest.main()
