"""Time that wraps. CircuitPython's supervisor.ticks_ms() counts modulo
2**29 ms (6.2 days), and a difference of two ticks is only right up to
2**28 ms (74.6 hours) apart. The firmware must work across the wrap, and
its uptime must keep counting past 74.6 hours."""

import json
import time
import unittest

from harness import Firmware, MJPEGReader, get, read_response, wait_for
import supervisor  # shim

from camserver.compat import ticks_add, ticks_diff

WRAP = 1 << 29
HOUR_MS = 3600 * 1000


def clock_at(ticks):
    """Set the shim clock so that ticks_ms() reads `ticks` now."""
    supervisor.OFFSET = 0
    supervisor.OFFSET = ticks - supervisor.ticks_ms()


class WrapTest(unittest.TestCase):
    def tearDown(self):
        supervisor.OFFSET = 0


class TestTickArithmetic(WrapTest):
    def test_diff_and_add_across_the_wrap(self):
        self.assertEqual(ticks_diff(5, WRAP - 5), 10)
        self.assertEqual(ticks_diff(WRAP - 5, 5), -10)
        self.assertEqual(ticks_add(WRAP - 5, 10), 5)
        self.assertEqual(ticks_diff(ticks_add(WRAP - 1000, 3000), WRAP - 1000), 3000)


class TestAcrossTheWrap(WrapTest):
    def test_server_runs_through_the_wrap(self):
        t_boot = time.monotonic()  # the shim's ticks_ms() is time.monotonic()
        clock_at(WRAP - 1500)  # the wrap comes 1.5 s after boot
        fw = Firmware(idle_timeout_ms=1000, header_timeout_ms=1000)
        try:
            viewer = MJPEGReader(fw)
            keep = fw.connect()
            t0 = time.monotonic()  # before the request: the idle timeout starts after its response
            keep.sendall(b"GET /health HTTP/1.1\r\nHost: cam\r\n\r\n")
            self.assertEqual(read_response(keep)[0], 200)
            slow = fw.connect()
            slow.sendall(b"GET /status HTTP/1.1\r\n")  # and never the rest

            # The keep-alive idle timeout (1 s) and the header deadline
            # (1 s) both span the wrap: they fire after ~1 s, not at once
            # and not never.
            keep.settimeout(15)
            slow.settimeout(15)
            self.assertEqual(keep.recv(100), b"")
            self.assertGreater(time.monotonic() - t0, 0.8)
            self.assertIn(b" 408 ", slow.recv(200))
            self.assertLess(time.monotonic() - t0, 10)
            keep.close()
            slow.close()

            time.sleep(1.5)  # well past the wrap (at least 2.5 s since boot)
            self.assertLess(supervisor.ticks_ms(), WRAP - 1500, "the clock has not wrapped")
            n = len(viewer.parts)
            wait_for(lambda: len(viewer.parts) > n + 5 or viewer.error)
            self.assertGreater(len(viewer.parts), n + 5, "the stream stalled at the wrap")
            seqs = [s for s, _ in viewer.parts]
            self.assertEqual(seqs, sorted(set(seqs)))
            st = json.loads(get(fw, "/status")[2])
            elapsed = time.monotonic() - t_boot
            # At least one frame over at most the time since boot (not the
            # ~0 a difference of ticks taken across the wrap would give).
            self.assertGreater(st["fps"], 0.5 / elapsed)
            # Counted across the wrap: at least the 2.5 s waited above, at
            # most the time since boot.
            self.assertGreaterEqual(st["uptime_s"], 2)
            self.assertLessEqual(st["uptime_s"], elapsed + 1)
            c = fw.connect()
            for _ in range(3):  # fresh frames across the wrap, each once
                c.sendall(b"GET /capture HTTP/1.1\r\nHost: cam\r\n\r\n")
                self.assertEqual(read_response(c)[0], 200)
            c.close()
            viewer.close()
            viewer.join(2)
        finally:
            fw.stop()

    def test_uptime_past_74_hours(self):
        """Jump the clock forward 10 hours at a time (as a long run would
        move it, seen by a server that samples it every few ms) to 80
        hours: uptime keeps counting up, through two wraps."""
        clock_at(WRAP - 1000)
        fw = Firmware()
        try:
            last = -1
            for _ in range(8):
                supervisor.OFFSET += 10 * HOUR_MS
                time.sleep(0.05)  # the accept loop samples the clock
                up = json.loads(get(fw, "/status")[2])["uptime_s"]
                self.assertGreater(up, last)
                last = up
            self.assertGreaterEqual(last, 80 * 3600)
            self.assertLess(last, 80 * 3600 + 60)
            self.assertEqual(get(fw, "/health")[0], 200)
        finally:
            fw.stop()


if __name__ == "__main__":
    unittest.main()
