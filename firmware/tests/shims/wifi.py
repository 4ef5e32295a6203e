"""Host stand-in for wifi: always connected, on 127.0.0.1."""


class _Radio:
    ipv4_address = "127.0.0.1"
    connected = True
    hostname = "hostsim"

    def connect(self, ssid, password=None, timeout=None):
        self.connected = True


radio = _Radio()
