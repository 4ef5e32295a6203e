//go:build linux && 386

package device

import "syscall"

// setRcvlowat sets SO_RCVLOWAT. 32-bit x86 Linux has no setsockopt
// system call of its own (it goes through socketcall), so this one is
// not raw.
func setRcvlowat(fd uintptr, n int) error {
	return syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVLOWAT, n)
}
