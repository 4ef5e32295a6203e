package main

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"
)

// receiver is a UDP socket the batch sends to.
func receiver(t *testing.T, network, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Skipf("no %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readAll reads n datagrams from c (generous deadline: they are sent).
func readAll(t *testing.T, c *net.UDPConn, n int) [][]byte {
	t.Helper()
	out, err := readN(c, n)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func readN(c *net.UDPConn, n int) ([][]byte, error) {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var out [][]byte
	buf := make([]byte, 2048)
	for len(out) < n {
		k, err := c.Read(buf)
		if err != nil {
			return out, fmt.Errorf("got %d of %d datagrams: %w", len(out), n, err)
		}
		out = append(out, bytes.Clone(buf[:k]))
	}
	return out, nil
}

// packet is destination dst's packet i, sized as a frame's are: equal
// but for a shorter one that ends a run, and a longer one after.
// batchSocket returns a batch and a UDP socket of its, bound to local.
func batchSocket(t *testing.T, network, local string) (*sendBatch, *batchConn) {
	t.Helper()
	batch := &sendBatch{}
	n, err := newBatchNet(batch)
	if err != nil {
		t.Fatal(err)
	}
	uc, err := n.ListenUDP(network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(local)))
	if err != nil {
		t.Fatal(err)
	}
	conn := uc.(*batchConn)
	t.Cleanup(func() { conn.Close() })
	return batch, conn
}

func packet(dst, i int) []byte {
	sizes := []int{1200, 1200, 1200, 700, 1200, 1300}
	b := bytes.Repeat([]byte{'.'}, sizes[i%len(sizes)])
	copy(b, fmt.Sprintf("viewer %d packet %d", dst, i))
	return b
}

// TestSendBatch: packets written while the batch is held are queued and
// sent at release, in order per destination, with fewer system calls than
// packets; a packet the kernel refuses is dropped and the rest still go;
// outside a hold, writes go at once.
func TestSendBatch(t *testing.T) {
	for _, tc := range []struct{ network, local, peer string }{
		{"udp4", "127.0.0.1:0", "127.0.0.1:0"},
		{"udp6", "[::1]:0", "[::1]:0"},
	} {
		t.Run(tc.network, func(t *testing.T) {
			a, b := receiver(t, tc.network, tc.peer), receiver(t, tc.network, tc.peer)
			batch, conn := batchSocket(t, tc.network, tc.local)
			to := []netip.AddrPort{a.LocalAddr().(*net.UDPAddr).AddrPort(), b.LocalAddr().(*net.UDPAddr).AddrPort()}
			refused := netip.AddrPortFrom(to[0].Addr(), 0) // port 0: EINVAL

			batch.hold()
			const per = 6
			for i := range per {
				for d := range to {
					if _, err := conn.WriteToAddrPort(packet(d, i), to[d]); err != nil {
						t.Fatal(err)
					}
				}
				if i == 2 {
					_, _ = conn.WriteToAddrPort([]byte("refused"), refused)
				}
			}
			batch.mu.Lock()
			queued := len(conn.queue)
			batch.mu.Unlock()
			if queued != 2*per+1 {
				t.Fatalf("%d packets queued while held, want %d", queued, 2*per+1)
			}
			batch.release()
			for d, r := range []*net.UDPConn{a, b} {
				got := readAll(t, r, per)
				for i, p := range got {
					if want := packet(d, i); !bytes.Equal(p, want) {
						t.Errorf("viewer %d datagram %d: %q, want %q", d, i, p, want)
					}
				}
			}
			st := batch.status()
			if st.Packets != 2*per || st.Dropped != 1 || st.Calls == 0 || st.Calls >= 2*per {
				t.Errorf("stats %+v: want %d packets in fewer calls, 1 dropped", st, 2*per)
			}

			// Not held: straight out, not counted as batched.
			if _, err := conn.WriteToAddrPort([]byte("now"), to[0]); err != nil {
				t.Fatal(err)
			}
			if got := readAll(t, a, 1); string(got[0]) != "now" {
				t.Errorf("unheld write: got %q", got[0])
			}
			if st2 := batch.status(); st2.Packets != st.Packets {
				t.Errorf("an unheld write went through the batch: %+v", st2)
			}
		})
	}
}

// TestSendBatchBounded: a hold longer than batchPackets sends what it has
// queued as it goes, and loses nothing.
func TestSendBatchBounded(t *testing.T) {
	r := receiver(t, "udp4", "127.0.0.1:0")
	// Room in the receiver for everything sent before it reads.
	_ = r.SetReadBuffer(4 << 20)
	batch, conn := batchSocket(t, "udp4", "127.0.0.1:0")
	to := r.LocalAddr().(*net.UDPAddr).AddrPort()
	total := 3*batchPackets + 7
	type result struct {
		got [][]byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		got, err := readN(r, total)
		done <- result{got, err}
	}()
	batch.hold()
	for i := range total {
		_, _ = conn.WriteToAddrPort(packet(0, i), to)
		batch.mu.Lock()
		q := len(conn.queue)
		batch.mu.Unlock()
		if q > batchPackets {
			t.Fatalf("%d packets queued, more than %d", q, batchPackets)
		}
	}
	batch.release()
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	for i, p := range res.got {
		if !bytes.Equal(p, packet(0, i)) {
			t.Fatalf("datagram %d: %q, want %q", i, p, packet(0, i))
		}
	}
}
