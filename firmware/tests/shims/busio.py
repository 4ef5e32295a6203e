"""Host stand-in for busio.I2C with CircuitPython's argument checks: pins
must be microcontroller.Pin objects that nobody holds, and the bus holds
them until deinit()."""

import microcontroller


class I2C:
    def __init__(self, scl, sda, *, frequency=100000, timeout=255):
        microcontroller._check(scl, "scl")
        microcontroller._check(sda, "sda")
        if scl is sda:
            raise ValueError("GPIO%d in use" % sda.number)
        microcontroller._check_i2c(scl, sda)
        self.scl, self.sda, self.frequency = scl, sda, frequency
        microcontroller._claim(scl, self)
        microcontroller._claim(sda, self)
        self._locked = False
        self._deinited = False

    def deinited(self):
        return self._deinited

    def deinit(self):
        if not self._deinited:
            self._deinited = True
            microcontroller._release(self.scl)
            microcontroller._release(self.sda)

    def _check(self):
        if self._deinited:
            raise ValueError("Object has been deinitialized and can no longer be used. Create a new object.")

    def try_lock(self):
        self._check()
        if self._locked:
            return False
        self._locked = True
        return True

    def unlock(self):
        self._check()
        self._locked = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.deinit()
