// Package pin checks a TLS server's certificate against certificates
// from a file. camd's own clients talk to servers on this machine (a
// plugin behind the output proxy, camd itself for camd reload) that are
// often reached at an IP address their certificate does not name: the
// certificate they were configured with is accepted as it is, and any
// other only when it verifies for the host.
package pin

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// Load reads the certificates in a PEM file; it fails when there is none.
func Load(file string) ([]*x509.Certificate, error) {
	rest, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if c, err := x509.ParseCertificate(b.Bytes); err == nil && b.Type == "CERTIFICATE" {
			certs = append(certs, c)
		}
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("no certificate in %s", file)
	}
	return certs, nil
}

// Verify accepts the certificate a server presented in cs when it is one
// of pinned, and otherwise when it verifies for host against the system's
// roots and pinned. (The handshake has proved the server holds its key.)
func Verify(cs tls.ConnectionState, host string, pinned []*x509.Certificate) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("no certificate presented")
	}
	leaf := cs.PeerCertificates[0]
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	for _, c := range pinned {
		if c.Equal(leaf) {
			return nil
		}
		roots.AddCert(c)
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err = leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: roots, Intermediates: inter})
	return err
}
