package smtpd

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writePair writes a fresh self-signed certificate for cn and its key, and returns the DER.
func writePair(t *testing.T, certFile, keyFile, cn string, mtime time.Time) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, DNSNames: []string{cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for f, b := range map[string]*pem.Block{certFile: {Type: "CERTIFICATE", Bytes: der}, keyFile: {Type: "PRIVATE KEY", Bytes: keyDER}} {
		if err := os.WriteFile(f, pem.EncodeToMemory(b), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(f, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	return der
}

func TestCertReloader(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	t0 := time.Now().Add(-time.Hour)
	first := writePair(t, certFile, keyFile, "one.example", t0)
	var logs bytes.Buffer
	r := &certReloader{certFile: certFile, keyFile: keyFile, log: slog.New(slog.NewTextHandler(&logs, nil))}
	if err := r.load(); err != nil {
		t.Fatal(err)
	}
	serving := func() []byte {
		t.Helper()
		c, err := r.get(nil)
		if err != nil || c == nil {
			t.Fatalf("get = %v, %v", c, err)
		}
		return c.Certificate[0]
	}
	if !bytes.Equal(serving(), first) {
		t.Fatal("not serving the loaded certificate")
	}

	// when the files are renewed, the new pair is served
	second := writePair(t, certFile, keyFile, "two.example", t0.Add(time.Minute))
	if !bytes.Equal(serving(), second) {
		t.Fatal("renewed certificate not served")
	}
	// when a renewal is half written, the previous pair stays and the failure is logged
	if err := os.WriteFile(keyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(serving(), second) {
		t.Fatal("a broken renewal replaced the served certificate")
	}
	if !strings.Contains(logs.String(), "could not reload the smtp tls certificate") {
		t.Errorf("no warning logged: %s", logs.String())
	}
	// and once it is complete, it is served
	third := writePair(t, certFile, keyFile, "three.example", t0.Add(2*time.Minute))
	if !bytes.Equal(serving(), third) {
		t.Fatal("completed renewal not served")
	}

	// Within the check interval the files are not looked at.
	r.every = time.Hour
	writePair(t, certFile, keyFile, "four.example", t0.Add(3*time.Minute))
	if !bytes.Equal(serving(), third) {
		t.Error("files re-read within the check interval")
	}
}
