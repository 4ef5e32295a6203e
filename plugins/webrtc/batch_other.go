//go:build !linux

package main

// sysBatch holds nothing where there is no sendmmsg(2).
type sysBatch struct{}

// sendQueued sends c.sending one packet at a time.
func (c *batchConn) sendQueued() {
	st := &c.batch.stats
	for _, q := range c.sending {
		st.Calls.Add(1)
		if _, err := c.UDPConn.WriteToUDPAddrPort(c.buf[q.off:q.off+q.len], q.to); err != nil {
			st.Dropped.Add(1)
		} else {
			st.Packets.Add(1)
		}
	}
}
