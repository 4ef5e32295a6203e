"""Out of memory is not out of service: with ~100 KB frames, several
viewers and a heap too small for all the frame buffers they would need,
the firmware sheds a viewer and /health keeps answering, during and after.

The small heap is a hard limit on the whole hostsim process (hostsim.py
--heap-kb): any allocation anywhere, the firmware's or the interpreter's,
fails with MemoryError past it, as on the board."""

import select
import threading
import time
import unittest

from harness import HostSim, MJPEGReader, get, wait_for
from test_server import untorn

FRAME_KB = 100
# After start-up: room for two or three ~130 KB frame buffers and the
# rest; not for the four or more that two readers and two stalled viewers
# (each holding a different frame) need.
HEAP_KB = 340


class HealthPoller(threading.Thread):
    def __init__(self, target, every=0.1):
        super().__init__(daemon=True)
        self.target, self.every = target, every
        self.results = []  # (status or error, ms)
        self._halt = threading.Event()
        self.start()

    def run(self):
        while not self._halt.wait(self.every):
            t0 = time.time()
            try:
                code = get(self.target, "/health")[0]
            except (OSError, EOFError) as e:
                code = repr(e)
            self.results.append((code, (time.time() - t0) * 1000))

    def stop(self):
        self._halt.set()
        self.join(5)


class TestSmallHeap(unittest.TestCase):
    def test_health_answers_under_memory_pressure(self):
        sim = HostSim("--frame-kb", FRAME_KB, "--fps", 30, "--heap-kb", HEAP_KB,
                      # Slots for every viewer and the /health poller, so
                      # that no viewer is closed to make room (that is
                      # test_starvation's business): only memory is short.
                      env={"CAMSERVER_MAX_CLIENTS": "6", "CAMSERVER_STREAM_CLIENTS": "4"})
        self.addCleanup(sim.stop)
        code, _, jpeg = get(sim, "/capture")
        self.assertEqual(code, 200)
        self.assertGreater(len(jpeg), (FRAME_KB - 5) * 1024)
        self.assertTrue(untorn(jpeg))

        health = HealthPoller(sim)
        readers = [MJPEGReader(sim) for _ in range(2)]
        wait_for(lambda: all(r.parts for r in readers))
        stalled = []
        for _ in range(2):
            v = MJPEGReader(sim, read=False, rcvbuf=4096)
            stalled.append(v)
            # So that each gets stuck on a frame of its own: it is being
            # sent one (or was shed), and a newer frame has come since.
            wait_for(lambda: select.select([v.sock], [], [], 0)[0])
            frames = sim.status()["frames"]
            wait_for(lambda: sim.status()["frames"] > frames + 1, every=0.05)
        # Under pressure until memory has run short, a viewer has been
        # shed, /health has been asked often enough and a reader has had
        # frames meanwhile (or a deadline passes).
        during = {}

        def pressure_seen():
            during.update(sim.status())
            return (during["mem_errors"] >= 1 and during["shed"] >= 1 and len(health.results) > 30
                    and max(len(r.parts) for r in readers) > 10)
        wait_for(pressure_seen, timeout=30, every=0.25)
        for r in readers + stalled:
            r.close()
        # Until the server has let go of every viewer.
        wait_for(lambda: sim.status()["stream_clients"] == 0, every=0.1)
        after_codes = [get(sim, "/health")[0] for _ in range(5)]
        health.stop()
        code, _, jpeg = get(sim, "/capture")
        viewer = MJPEGReader(sim)
        wait_for(lambda: len(viewer.parts) >= 5 or viewer.error)
        viewer.close()
        viewer.join(2)

        codes = [c for c, _ in health.results]
        worst = max(ms for _, ms in health.results)
        print("\n  small heap (%d KB over start-up, %d KB frames): mem_errors %d, viewers shed %d, "
              "frame buffers %d, mem_free %d B; /health %d/%d ok during, slowest %.0f ms; reader frames %s" % (
                  HEAP_KB, FRAME_KB, during["mem_errors"], during["shed"], during["frame_buffers"],
                  during["mem_free"], codes.count(200), len(codes), worst, [len(r.parts) for r in readers]))
        self.assertTrue(sim.alive(), "".join(sim.output))
        self.assertGreaterEqual(during["mem_errors"], 1, "the heap never ran short: the test tests nothing")
        self.assertGreaterEqual(during["shed"], 1)
        self.assertEqual(set(codes), {200}, codes)
        self.assertGreater(len(codes), 30)
        self.assertEqual(after_codes, [200] * 5)
        self.assertEqual(code, 200)
        self.assertTrue(untorn(jpeg))
        self.assertGreaterEqual(len(viewer.parts), 5, "a new viewer after the pressure gets frames")
        self.assertGreater(max(len(r.parts) for r in readers), 10, "viewers kept getting frames")
        for _, part in viewer.parts + readers[0].parts + readers[1].parts:
            self.assertTrue(untorn(part))
        wait_for(lambda: sim.status()["stream_clients"] == 0, every=0.1)
        self.assertEqual(sim.status()["stream_clients"], 0, "a viewer's connection was left open")


if __name__ == "__main__":
    unittest.main()
