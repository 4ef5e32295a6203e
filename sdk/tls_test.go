package sdk

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/camd/camd/internal/testcert"
)

// writeCert writes a self-signed certificate named cn and its key.
func writeCert(t *testing.T, dir, cn string) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	testcert.New(t, cn).Write(t, certFile, keyFile)
	return certFile, keyFile
}

// A renewed certificate is served without a restart; a half-written
// renewal keeps the old one.
func TestCertificateReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeCert(t, dir, "old")
	if _, err := TLSConfig(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	c := &certFiles{cert: certFile, key: keyFile}
	if err := c.load(); err != nil {
		t.Fatal(err)
	}
	// serving returns the name served once certCheckEvery has passed.
	serving := func() string {
		t.Helper()
		c.checked = time.Time{}
		pair, err := c.get(nil)
		if err != nil {
			t.Fatal(err)
		}
		leaf, _ := x509.ParseCertificate(pair.Certificate[0])
		return leaf.Subject.CommonName
	}
	if got := serving(); got != "old" {
		t.Fatalf("serving %q", got)
	}
	later := time.Now().Add(time.Minute) // the files' times change
	newCert, newKey := writeCert(t, t.TempDir(), "new")
	// Half a renewal: the new certificate beside the old key.
	b, _ := os.ReadFile(newCert)
	os.WriteFile(certFile, b, 0o600)
	os.Chtimes(certFile, later, later)
	if got := serving(); got != "old" {
		t.Fatalf("a mismatched pair replaced the certificate: serving %q", got)
	}
	b, _ = os.ReadFile(newKey)
	os.WriteFile(keyFile, b, 0o600)
	os.Chtimes(keyFile, later, later)
	if got := serving(); got != "new" {
		t.Fatalf("after the renewal: serving %q, want new", got)
	}
}
