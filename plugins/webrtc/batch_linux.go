package main

import (
	"encoding/binary"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr of sendmmsg(2); Go pads it as C does.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// sysBatch is the memory a batchConn's sendmmsg calls are built in,
// reused from one flush to the next.
type sysBatch struct {
	family int // the socket's, 0 until known
	msgs   []mmsghdr
	iovs   []unix.Iovec
	names4 []unix.RawSockaddrInet4
	names6 []unix.RawSockaddrInet6
}

// sendQueued sends c.sending with as few sendmmsg calls as the kernel
// takes. A packet the kernel refuses is dropped and the rest still sent.
func (c *batchConn) sendQueued() {
	raw, err := c.UDPConn.SyscallConn()
	if err != nil {
		return
	}
	s := &c.sys
	if s.family == 0 {
		_ = raw.Control(func(fd uintptr) {
			s.family, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
		})
	}
	n := len(c.sending)
	s.msgs = grow(s.msgs, n)
	s.iovs = grow(s.iovs, n)
	if s.family == unix.AF_INET6 {
		s.names6 = grow(s.names6, n)
	} else {
		s.names4 = grow(s.names4, n)
	}
	for i, q := range c.sending {
		iov := &s.iovs[i]
		iov.Base = &c.buf[q.off]
		iov.SetLen(q.len)
		m := &s.msgs[i]
		*m = mmsghdr{}
		m.hdr.Iov = iov
		m.hdr.SetIovlen(1)
		if s.family == unix.AF_INET6 {
			sa := &s.names6[i]
			*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: q.to.Addr().As16()}
			binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], q.to.Port())
			m.hdr.Name = (*byte)(unsafe.Pointer(sa))
			m.hdr.Namelen = unix.SizeofSockaddrInet6
		} else {
			sa := &s.names4[i]
			*sa = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: q.to.Addr().Unmap().As4()}
			binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], q.to.Port())
			m.hdr.Name = (*byte)(unsafe.Pointer(sa))
			m.hdr.Namelen = unix.SizeofSockaddrInet4
		}
	}
	msgs := s.msgs[:n]
	st := &c.batch.stats
	for len(msgs) > 0 {
		var sent int
		var errno unix.Errno
		werr := raw.Write(func(fd uintptr) bool {
			r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)), 0, 0, 0)
			if e == unix.EAGAIN {
				return false // the send buffer is full: wait until it drains
			}
			sent, errno = int(r), e
			return true
		})
		st.Calls.Add(1)
		switch {
		case werr != nil: // the socket is closed
			st.Dropped.Add(uint64(len(msgs)))
			return
		case errno != 0 || sent <= 0:
			st.Dropped.Add(1)
			msgs = msgs[1:] // the first packet failed: drop it, send on
		default:
			st.Packets.Add(uint64(sent))
			msgs = msgs[sent:]
		}
	}
}

// grow returns s with length n, reusing its memory when it can.
func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}
