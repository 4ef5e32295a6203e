package sdk

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"time"
)

// certCheckEvery is how often a TLS listener looks whether its
// certificate files changed (certbot, a cert-manager renewal).
const certCheckEvery = 10 * time.Second

// TLSConfig returns a server TLS config serving the certificate and key in
// certFile and keyFile, and re-reading them when they change, so a renewed
// certificate is used without a restart. It fails if the files cannot be
// loaded now.
func TLSConfig(certFile, keyFile string) (*tls.Config, error) {
	c := &certFiles{cert: certFile, key: keyFile}
	if err := c.load(); err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: c.get}, nil
}

// certFiles is a certificate kept in step with its files.
type certFiles struct {
	cert, key string

	mu      sync.Mutex
	current *tls.Certificate
	mtimes  [2]time.Time
	checked time.Time
}

func (c *certFiles) load() error {
	pair, err := tls.LoadX509KeyPair(c.cert, c.key)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	c.current = &pair
	c.mtimes = c.stat()
	return nil
}

func (c *certFiles) stat() (m [2]time.Time) {
	for i, f := range []string{c.cert, c.key} {
		if fi, err := os.Stat(f); err == nil {
			m[i] = fi.ModTime()
		}
	}
	return m
}

// get implements tls.Config.GetCertificate. A renewal half-written (the
// new certificate with the old key) fails to load; the old pair stays in
// use until both files match.
func (c *certFiles) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.checked) >= certCheckEvery {
		c.checked = time.Now()
		if c.stat() != c.mtimes {
			_ = c.load() // on failure the previous pair stays
		}
	}
	return c.current, nil
}
