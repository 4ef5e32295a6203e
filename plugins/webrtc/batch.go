package main

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
)

const (
	// batchBytes and batchPackets bound what a held batch queues before
	// it is sent anyway: a keyframe to hundreds of viewers need not sit
	// in memory whole.
	batchBytes   = 256 << 10
	batchPackets = 512
)

// sendBatch gathers the UDP packets viewers are sent while a frame goes
// out and sends them together: on Linux one sendmmsg(2) for the packets
// of a frame to every viewer, instead of a sendto(2) per packet per
// viewer, which is what the plugin's CPU went to with many viewers. It
// applies to the sockets viewers share (ice.udp_ports is one port, or
// empty), which batchNet opens.
//
// A frame is held from its first packet to its last (hold, release);
// whatever is written on the sockets meanwhile (ICE checks, RTCP) waits
// with it, less than a millisecond. Outside a hold, writes go straight
// out.
type sendBatch struct {
	mu    sync.Mutex
	held  int // holds open: pipelines sending a frame
	conns []*batchConn

	stats batchStats
}

// batchStats count what went out in batches, for Status.
type batchStats struct {
	Packets atomic.Uint64 // sent in batches
	Calls   atomic.Uint64 // system calls that sent them
	Dropped atomic.Uint64 // refused by the kernel (a bad address)
	GSO     atomic.Uint64 // of Packets, sent as segments of one larger message (UDP GSO)
}

// batchStatus is the batch's part of Status.
type batchStatus struct {
	Packets uint64 `json:"packets"`
	Calls   uint64 `json:"calls"`
	Dropped uint64 `json:"dropped"`
	GSO     uint64 `json:"gso_segments"`
}

func (b *sendBatch) status() batchStatus {
	if b == nil {
		return batchStatus{}
	}
	return batchStatus{Packets: b.stats.Packets.Load(), Calls: b.stats.Calls.Load(), Dropped: b.stats.Dropped.Load(), GSO: b.stats.GSO.Load()}
}

// hold starts queueing writes; release ends the hold and sends what was
// queued once no pipeline holds the batch any more. A nil batch does
// nothing.
func (b *sendBatch) hold() {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.held++
	b.mu.Unlock()
}

func (b *sendBatch) release() {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.held--
	if b.held > 0 {
		b.mu.Unlock()
		return
	}
	var due []*batchConn
	for _, c := range b.conns {
		if len(c.queue) > 0 {
			due = append(due, c)
		}
	}
	b.mu.Unlock()
	for _, c := range due {
		c.flush()
	}
}

// forget drops a closed connection.
func (b *sendBatch) forget(c *batchConn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, x := range b.conns {
		if x == c {
			b.conns = append(b.conns[:i], b.conns[i+1:]...)
			return
		}
	}
}

// batchNet is the network pion's UDP mux listens with: the standard one,
// whose UDP sockets go through the batch.
type batchNet struct {
	*stdnet.Net
	batch *sendBatch
}

func newBatchNet(b *sendBatch) (*batchNet, error) {
	n, err := stdnet.NewNet()
	if err != nil {
		return nil, err
	}
	return &batchNet{Net: n, batch: b}, nil
}

// ListenUDP implements transport.Net.
func (n *batchNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	bc := &batchConn{UDPConn: c, batch: n.batch}
	n.batch.mu.Lock()
	n.batch.conns = append(n.batch.conns, bc)
	n.batch.mu.Unlock()
	return bc, nil
}

// batchConn is a UDP socket whose writes are queued while its batch is
// held. It implements ice.AddrPortReaderWriter, the interface pion's mux
// reads and writes through.
type batchConn struct {
	*net.UDPConn
	batch *sendBatch

	// Under batch.mu: the packets queued, their bytes back to back.
	queue []queued
	bytes []byte
	// Owned by flush (flushMu): what a send is built from.
	flushMu sync.Mutex
	sending []queued
	buf     []byte
	sys     sysBatch // the platform's sender (sendmmsg on Linux)
}

type queued struct {
	to       netip.AddrPort
	off, len int
}

// WriteToAddrPort queues p for to while the batch is held, else sends it.
func (c *batchConn) WriteToAddrPort(p []byte, to netip.AddrPort) (int, error) {
	if len(p) == 0 || !to.IsValid() || (to.Addr().Is6() && !to.Addr().Is4In6() && c.LocalAddr().(*net.UDPAddr).IP.To4() != nil) {
		return c.UDPConn.WriteToUDPAddrPort(p, to) // what a batch cannot hold: the kernel's error, not a panic at flush
	}
	b := c.batch
	b.mu.Lock()
	if b.held == 0 {
		b.mu.Unlock()
		return c.UDPConn.WriteToUDPAddrPort(p, to)
	}
	c.queue = append(c.queue, queued{to: to, off: len(c.bytes), len: len(p)})
	c.bytes = append(c.bytes, p...)
	full := len(c.bytes) >= batchBytes || len(c.queue) >= batchPackets
	b.mu.Unlock()
	if full {
		c.flush()
	}
	return len(p), nil
}

// WriteTo implements net.PacketConn for writers that do not use netip.
func (c *batchConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return c.UDPConn.WriteTo(p, addr)
	}
	return c.WriteToAddrPort(p, ua.AddrPort())
}

// ReadFromAddrPort implements ice.AddrPortReaderWriter.
func (c *batchConn) ReadFromAddrPort(p []byte) (int, netip.AddrPort, error) {
	return c.UDPConn.ReadFromUDPAddrPort(p)
}

// Close implements net.PacketConn; what is queued is dropped.
func (c *batchConn) Close() error {
	c.batch.forget(c)
	return c.UDPConn.Close()
}

// flush sends what is queued. Errors are per packet and dropped, as a
// lost UDP packet is: each viewer's connection notices its own failures.
func (c *batchConn) flush() {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	b := c.batch
	b.mu.Lock()
	// Swap the queue with the last one sent, so both keep their memory.
	c.queue, c.sending = c.sending[:0], c.queue
	c.bytes, c.buf = c.buf[:0], c.bytes
	b.mu.Unlock()
	if len(c.sending) > 0 {
		c.sendQueued()
	}
}
