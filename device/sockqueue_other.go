//go:build !linux

package device

import "errors"

// socketQueued is Linux's SIOCINQ; elsewhere a watchdog sees only the
// bytes read.
func socketQueued(fd uintptr) (int, error) {
	return 0, errors.ErrUnsupported
}
