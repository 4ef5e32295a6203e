"""Host stand-in for pwmio."""


class PWMOut:
    def __init__(self, pin, frequency=500, duty_cycle=0):
        self.pin, self.frequency, self.duty_cycle = pin, frequency, duty_cycle

    def deinit(self):
        pass
