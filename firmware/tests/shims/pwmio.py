"""Host stand-in for pwmio.PWMOut: claims its pin, needs an output pin."""

import microcontroller


class PWMOut:
    def __init__(self, pin, *, duty_cycle=0, frequency=500, variable_frequency=False):
        microcontroller._check(pin, "pin")
        microcontroller._check_output(pin, "pin")
        self.pin, self.frequency, self.duty_cycle = pin, frequency, duty_cycle
        microcontroller._claim(pin, self)

    def deinit(self):
        microcontroller._release(self.pin)
