"""Host stand-in for microcontroller."""


class _CPU:
    temperature = 42.0
    frequency = 240000000


cpu = _CPU()
watchdog = None


def reset():
    raise SystemExit("microcontroller.reset()")
