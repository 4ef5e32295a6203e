package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
)

// certRenew is how long before its expiry a certificate is replaced:
// pion's are valid for a month, and a session keeps the one it started
// with.
const certRenew = 14 * 24 * time.Hour

// certificates is the DTLS certificate viewers' peer connections share.
// Peers check it by the fingerprint in the SDP, not by a CA, so one per
// plugin does what one per viewer did, without an ECDSA key and a
// certificate made and kept for every viewer.
type certificates struct {
	mu   sync.Mutex
	cert *webrtc.Certificate
}

// get returns the certificate, made on first use and again when it is
// within certRenew of expiring.
func (c *certificates) get() ([]webrtc.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cert == nil || time.Until(c.cert.Expires()) < certRenew {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("cannot make a DTLS key: %w", err)
		}
		cert, err := webrtc.GenerateCertificate(key)
		if err != nil {
			return nil, fmt.Errorf("cannot make a DTLS certificate: %w", err)
		}
		c.cert = cert
	}
	return []webrtc.Certificate{*c.cert}, nil
}
