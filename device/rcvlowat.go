//go:build !(linux && 386)

package device

import (
	"syscall"
	"unsafe"
)

// setRcvlowat sets SO_RCVLOWAT with a raw system call, as reads are made
// (see lowatConn.read): setsockopt cannot block.
func setRcvlowat(fd uintptr, n int) error {
	v := int32(n)
	_, _, errno := syscall.RawSyscall6(syscall.SYS_SETSOCKOPT, fd, syscall.SOL_SOCKET, syscall.SO_RCVLOWAT,
		uintptr(unsafe.Pointer(&v)), unsafe.Sizeof(v), 0)
	if errno != 0 {
		return errno
	}
	return nil
}
