"""Host stand-in for `board`. Importing it gives the module of one real
board, shimboards.DEFAULT, with only the names its pins.c defines; tests
boot other boards with shimboards.use(), which replaces this module."""

import shimboards

shimboards.use(shimboards.DEFAULT)  # puts the built module in sys.modules
