"""camserver: a small async HTTP/1.1 camera server for CircuitPython.

Endpoints are coroutines on asyncio over non-blocking socketpool sockets,
so streaming, captures, control requests and the rest of the robot's tasks
all make progress together. It speaks the ESP32-CAM CameraWebServer API:
/capture, /stream, /status, /control, plus /health.
"""

VERSION = "1.0.0"
