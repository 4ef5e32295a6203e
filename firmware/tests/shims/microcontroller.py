"""Host stand-in for microcontroller: Pin objects, and which pins are in use.

On CircuitPython a pin belongs to one driver at a time: busio.I2C,
espcamera.Camera, pwmio.PWMOut ... claim their pins and raise
ValueError("<pin> in use") for a pin someone else holds, and deinit()
gives them back. The shims keep that ledger here. A new boot (the `board`
shim's use()) starts with every pin free, as a reset does.
"""


class Pin:
    def __init__(self, number):
        self.number = number

    def __repr__(self):
        return "board.GPIO%d" % self.number

    def __hash__(self):
        return self.number

    def __eq__(self, other):
        return self is other


class _Pins:
    """microcontroller.pin: GPIOnn for every pin of the chip."""


pin = _Pins()
_in_use = {}   # GPIO number -> who holds it (for the error message)
_input_only = set()


def _reset(mcu):
    """A fresh boot on an mcu ('esp32', 'esp32s3', ...): all pins free."""
    global pin
    _in_use.clear()
    _input_only.clear()
    pin = _Pins()
    for n in range(49):
        setattr(pin, "GPIO%d" % n, Pin(n))
    if mcu == "esp32":
        # The original ESP32's GPIO34..39 have no output driver.
        _input_only.update(range(34, 40))


def _get(number):
    return getattr(pin, "GPIO%d" % number)


def _check(p, arg):
    """What validate_obj_is_free_pin() does: a Pin, and free."""
    if not isinstance(p, Pin):
        raise TypeError("%s must be of type Pin, not %s" % (arg, type(p).__name__))
    if p.number in _in_use:
        raise ValueError("GPIO%d in use" % p.number)


def _check_output(p, arg):
    if p.number in _input_only:
        raise ValueError("Invalid %s pin" % arg)


def _check_i2c(scl, sda):
    """common-hal/busio/I2C.c refuses the strapping pins 45 and 46; on an
    ESP32 the input-only pins cannot drive the bus either."""
    for p in (scl, sda):
        if p.number in (45, 46) or p.number in _input_only:
            raise ValueError("Invalid pins")


def _claim(p, owner):
    _in_use[p.number] = owner


def _release(p):
    if p is not None:
        _in_use.pop(p.number, None)


def _held():
    """GPIO numbers in use, for the tests."""
    return set(_in_use)


class _CPU:
    temperature = 42.0
    frequency = 240000000


cpu = _CPU()
watchdog = None


def reset():
    raise SystemExit("microcontroller.reset()")


_reset("esp32")
