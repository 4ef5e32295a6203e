package main

import (
	"bytes"
	"net"
	"testing"
)

// TestSendBatchGSO: where the kernel has UDP GSO, a destination's run of
// equal-sized packets leaves as one message and arrives as the packets.
func TestSendBatchGSO(t *testing.T) {
	r := receiver(t, "udp4", "127.0.0.1:0")
	batch, conn := batchSocket(t, "udp4", "127.0.0.1:0")
	to := r.LocalAddr().(*net.UDPAddr).AddrPort()
	batch.hold()
	for i := range 4 { // 1200, 1200, 1200, 700: one message
		_, _ = conn.WriteToAddrPort(packet(0, i), to)
	}
	batch.release()
	if conn.sys.gso != 1 {
		t.Skip("no UDP GSO here; the packets went one by one")
	}
	for i, p := range readAll(t, r, 4) {
		if !bytes.Equal(p, packet(0, i)) {
			t.Fatalf("datagram %d: %d bytes %.20q, want %d bytes %.20q", i, len(p), p, len(packet(0, i)), packet(0, i))
		}
	}
	if st := batch.status(); st.GSO != 4 || st.Calls != 1 {
		t.Fatalf("stats %+v: want the 4 packets as GSO segments in 1 call", st)
	}
}
