package devstack

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestEnsureCert(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()

	// given an empty dir, a certificate is generated
	certFile, keyFile, generated, err := ensureCert(dir, now)
	if err != nil || !generated {
		t.Fatalf("ensureCert = %v, %v; want a generated pair", generated, err)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	leaf := pair.Leaf
	key, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || key.Curve != elliptic.P256() {
		t.Errorf("public key %T, want ECDSA P-256", leaf.PublicKey)
	}
	// that verifies for the names a local client uses, when trusted as its own root
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	for _, name := range []string{"localhost", "127.0.0.1", "::1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, CurrentTime: now}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
	if !leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("IP SANs = %v", leaf.IPAddresses)
	}
	if info, err := os.Stat(keyFile); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %v, %v; want 0600", info.Mode().Perm(), err)
	}
	if b, _ := os.ReadFile(keyFile); !bytes.HasPrefix(b, []byte("-----BEGIN PRIVATE KEY-----")) {
		t.Errorf("key file is not a PKCS #8 PEM key")
	}
	first, _ := os.ReadFile(certFile)

	// when called again, the pair is kept
	if _, _, generated, err := ensureCert(dir, now.Add(time.Hour)); err != nil || generated {
		t.Fatalf("second ensureCert = %v, %v; want the existing pair", generated, err)
	}
	if again, _ := os.ReadFile(certFile); !bytes.Equal(first, again) {
		t.Error("certificate rewritten although still valid")
	}

	// and replaced when it is about to expire, or broken
	for name, prepare := range map[string]func() time.Time{
		"near its end": func() time.Time { return leaf.NotAfter.Add(-time.Hour) },
		"broken key": func() time.Time {
			if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("junk")}), 0o600); err != nil {
				t.Fatal(err)
			}
			return now
		},
		"missing certificate": func() time.Time {
			if err := os.Remove(certFile); err != nil {
				t.Fatal(err)
			}
			return now
		},
	} {
		at := prepare()
		if _, _, generated, err := ensureCert(dir, at); err != nil || !generated {
			t.Errorf("%s: ensureCert = %v, %v; want a new pair", name, generated, err)
		}
		if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
			t.Errorf("%s: new pair does not load: %v", name, err)
		}
	}
	if entries, _ := filepath.Glob(filepath.Join(dir, "*.tmp-*")); len(entries) != 0 {
		t.Errorf("temporary files left: %v", entries)
	}
}
