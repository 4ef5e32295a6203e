"""Host stand-in for wifi: a network on 127.0.0.1 that takes any SSID.

CircuitPython connects at boot when settings.toml has CIRCUITPY_WIFI_SSID
(supervisor/shared/web_workflow/web_workflow.c); _boot() does the same
from os.getenv. Until a test boots, the radio is connected. connect()
checks its arguments as shared-bindings/wifi/Radio.c does: the SSID must be
a buffer (str or bytes: None is a TypeError) of 1..32 bytes, a password
empty or 8..64 bytes; channel, bssid and timeout are keyword-only.
"""


def _buffer(value, arg):
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError("object with buffer protocol required")


class _Radio:
    ipv4_address = "127.0.0.1"
    hostname = "hostsim"

    def __init__(self):
        self.connected = True

    def connect(self, ssid, password=b"", *, channel=0, bssid=None, timeout=None):
        if not 1 <= len(_buffer(ssid, "ssid")) <= 32:
            raise ValueError("ssid length must be 1-32")
        if password is not None:
            n = len(_buffer(password, "password"))
            if n and not 8 <= n <= 64:
                raise ValueError("password length must be 8-64")
        self.connected = True


radio = _Radio()


def _boot():
    """A fresh boot: connected if settings.toml names a network."""
    import os
    radio.connected = bool(os.getenv("CIRCUITPY_WIFI_SSID"))
