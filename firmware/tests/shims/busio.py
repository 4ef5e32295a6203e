"""Host stand-in for busio."""


class I2C:
    def __init__(self, scl, sda, frequency=100000):
        self.scl, self.sda = scl, sda

    def deinit(self):
        pass
