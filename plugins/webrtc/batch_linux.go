package main

import (
	"encoding/binary"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	// gsoSegments and gsoBytes bound one UDP GSO message: the kernel
	// takes up to 64 segments (UDP_MAX_SEGMENTS, more on newer kernels)
	// in one datagram's worth of bytes.
	gsoSegments = 64
	gsoBytes    = 65000
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
	gso    int // UDP GSO: 0 not known yet, 1 works, -1 not here
	msgs   []mmsghdr
	segs   []int // packets per message
	iovs   []unix.Iovec
	names4 []unix.RawSockaddrInet4
	names6 []unix.RawSockaddrInet6
	ctrl   []byte
	order  []int                  // c.sending's indices, by destination
	first  map[netip.AddrPort]int // a destination's place in order's grouping
	next   []int                  // the same destination's next packet, -1 at the end
	last   []int                  // by group: its last packet so far
	heads  []int                  // by group: its first packet
}

var cmsgSpace = unix.CmsgSpace(2)

// sendQueued sends c.sending with as few system calls as it can: one
// sendmmsg(2) for every destination, and with UDP GSO each destination's
// run of equal-sized packets (a frame's, to one viewer) as one message
// the kernel cuts up, so the network stack is walked once per viewer per
// frame instead of once per packet. A packet the kernel refuses is
// dropped and the rest still sent.
func (c *batchConn) sendQueued() {
	raw, err := c.UDPConn.SyscallConn()
	if err != nil {
		return
	}
	s := &c.sys
	if s.family == 0 {
		_ = raw.Control(func(fd uintptr) {
			s.family, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
			s.gso = -1
			if _, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT); err == nil {
				s.gso = 1
			}
		})
	}
	c.group()
	n := len(c.sending)
	s.msgs = grow(s.msgs, n)
	s.segs = grow(s.segs, n)
	s.iovs = grow(s.iovs, n)
	s.ctrl = grow(s.ctrl, n*cmsgSpace)
	if s.family == unix.AF_INET6 {
		s.names6 = grow(s.names6, n)
	} else {
		s.names4 = grow(s.names4, n)
	}
	// Messages: runs of one destination's packets, in order.
	m := 0
	for i := 0; i < n; {
		q := c.sending[s.order[i]]
		size, bytes, k := q.len, 0, 0
		for i+k < n && k < gsoSegments {
			p := c.sending[s.order[i+k]]
			if p.to != q.to || p.len > size || bytes+p.len > gsoBytes || (k > 0 && s.gso != 1) {
				break
			}
			iov := &s.iovs[i+k]
			iov.Base = &c.buf[p.off]
			iov.SetLen(p.len)
			bytes += p.len
			k++
			if p.len < size {
				break // a shorter packet can only end a GSO message
			}
		}
		c.message(m, i, k, q.to, size)
		m++
		i += k
	}
	msgs := s.msgs[:m]
	st := &c.batch.stats
	for len(msgs) > 0 {
		var sent int
		var errno unix.Errno
		werr := raw.Write(func(fd uintptr) bool {
			r, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)), 0, 0, 0)
			if e == unix.EAGAIN {
				return false // the send buffer is full: wait until it drains
			}
			sent, errno = int(r), e
			return true
		})
		st.Calls.Add(1)
		done := len(s.msgs[:m]) - len(msgs)
		switch {
		case werr != nil: // the socket is closed
			for j := range msgs {
				st.Dropped.Add(uint64(s.segs[done+j]))
			}
			return
		case errno == unix.EINTR:
		case errno != 0 || sent <= 0:
			if k := s.segs[done]; k > 1 && (errno == unix.EIO || errno == unix.EINVAL) {
				// The device cannot take GSO (no checksum offload): its
				// packets one by one, and no GSO on this socket again.
				s.gso = -1
				c.sendEach(done)
			} else {
				st.Dropped.Add(uint64(s.segs[done]))
			}
			msgs = msgs[1:]
		default:
			for j := range sent {
				k := uint64(s.segs[done+j])
				st.Packets.Add(k)
				if k > 1 {
					st.GSO.Add(k)
				}
			}
			msgs = msgs[sent:]
		}
	}
}

// group orders c.sending by destination, keeping each destination's
// packets in the order they were written.
func (c *batchConn) group() {
	s := &c.sys
	n := len(c.sending)
	if s.first == nil {
		s.first = map[netip.AddrPort]int{}
	}
	clear(s.first)
	s.next = grow(s.next, n)
	s.heads, s.last = s.heads[:0], s.last[:0]
	for i, q := range c.sending {
		s.next[i] = -1
		g, ok := s.first[q.to]
		if !ok {
			g = len(s.heads)
			s.first[q.to] = g
			s.heads = append(s.heads, i)
			s.last = append(s.last, i)
			continue
		}
		s.next[s.last[g]] = i
		s.last[g] = i
	}
	s.order = s.order[:0]
	for _, h := range s.heads {
		for i := h; i >= 0; i = s.next[i] {
			s.order = append(s.order, i)
		}
	}
	if len(s.first) > 4096 {
		s.first = nil // viewers come and go: do not keep every address seen
	}
}

// message fills msgs[m]: k packets from iovs[i:], to to, cut into
// segments of size when there are several.
func (c *batchConn) message(m, i, k int, to netip.AddrPort, size int) {
	s := &c.sys
	h := &s.msgs[m]
	*h = mmsghdr{}
	h.hdr.Iov = &s.iovs[i]
	h.hdr.SetIovlen(k)
	s.segs[m] = k
	if s.family == unix.AF_INET6 {
		sa := &s.names6[m]
		*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: to.Addr().As16()}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], to.Port())
		h.hdr.Name = (*byte)(unsafe.Pointer(sa))
		h.hdr.Namelen = unix.SizeofSockaddrInet6
	} else {
		sa := &s.names4[m]
		*sa = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: to.Addr().Unmap().As4()}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], to.Port())
		h.hdr.Name = (*byte)(unsafe.Pointer(sa))
		h.hdr.Namelen = unix.SizeofSockaddrInet4
	}
	if k > 1 {
		ctrl := s.ctrl[m*cmsgSpace : (m+1)*cmsgSpace]
		clear(ctrl)
		cm := (*unix.Cmsghdr)(unsafe.Pointer(&ctrl[0]))
		cm.Level, cm.Type = unix.IPPROTO_UDP, unix.UDP_SEGMENT
		cm.SetLen(unix.CmsgLen(2))
		binary.NativeEndian.PutUint16(ctrl[unix.CmsgLen(0):], uint16(size))
		h.hdr.Control = &ctrl[0]
		h.hdr.SetControllen(cmsgSpace)
	}
}

// sendEach sends message m's packets one at a time.
func (c *batchConn) sendEach(m int) {
	s := &c.sys
	h := &s.msgs[m]
	iovs := unsafe.Slice(h.hdr.Iov, s.segs[m])
	var to netip.AddrPort
	if s.family == unix.AF_INET6 {
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(h.hdr.Name))
		to = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:]))
	} else {
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(h.hdr.Name))
		to = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:]))
	}
	st := &c.batch.stats
	for _, iov := range iovs {
		st.Calls.Add(1)
		if _, err := c.UDPConn.WriteToUDPAddrPort(unsafe.Slice(iov.Base, iov.Len), to); err != nil {
			st.Dropped.Add(1)
		} else {
			st.Packets.Add(1)
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
