package device

import (
	"syscall"
	"unsafe"
)

// socketQueued returns how many received bytes wait in a socket to be
// read (SIOCINQ).
func socketQueued(fd uintptr) (int, error) {
	var n int32
	if _, _, errno := syscall.RawSyscall(syscall.SYS_IOCTL, fd, syscall.TIOCINQ, uintptr(unsafe.Pointer(&n))); errno != 0 {
		return 0, errno
	}
	return int(n), nil
}
