package devstack

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Names of the STARTTLS certificate and key `mailpipe dev` keeps in its Dir. Trust the
// certificate in a client to verify the dev server (it is its own issuer).
const (
	TLSCertFile = "smtp-tls.crt"
	TLSKeyFile  = "smtp-tls.key"
)

const (
	// certLifetime: a year, so a dev directory keeps one certificate a client can pin.
	certLifetime = 365 * 24 * time.Hour
	// certRenewBefore: a certificate closer than this to its end is replaced at start.
	certRenewBefore = 24 * time.Hour
)

// ensureCert returns the paths of the dev STARTTLS certificate and key in dir. When they are
// missing, unreadable, not a pair, or expire within certRenewBefore of now, it writes a new
// self-signed ECDSA P-256 certificate for localhost, 127.0.0.1 and ::1 first (generated reports
// that). The key file is readable by the owner only.
func ensureCert(dir string, now time.Time) (certFile, keyFile string, generated bool, err error) {
	certFile, keyFile = filepath.Join(dir, TLSCertFile), filepath.Join(dir, TLSKeyFile)
	if pair, err := tls.LoadX509KeyPair(certFile, keyFile); err == nil && pair.Leaf != nil &&
		now.Add(certRenewBefore).Before(pair.Leaf.NotAfter) {
		return certFile, keyFile, false, nil
	}
	certPEM, keyPEM, err := selfSigned(now)
	if err != nil {
		return "", "", false, err
	}
	// Key first: a crash between the two writes leaves a pair that fails to load and is
	// replaced at the next start, never a new certificate with a stale key.
	if err := writeFile(keyFile, keyPEM, 0o600); err != nil {
		return "", "", false, err
	}
	if err := writeFile(certFile, certPEM, 0o644); err != nil { // a certificate is public
		return "", "", false, err
	}
	return certFile, keyFile, true, nil
}

// selfSigned returns a PEM certificate and PKCS #8 key for the dev SMTP server.
func selfSigned(now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating the dev tls key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, fmt.Errorf("generating the dev tls serial number: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "localhost", Organization: []string{"mailpipe dev"}},
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:             now.Add(-time.Hour), // tolerate a client clock a little behind
		NotAfter:              now.Add(certLifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		// Its own CA, so a client can trust exactly this certificate (RootCAs, --tls-ca-path).
		IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("creating the dev tls certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding the dev tls key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// writeFile replaces path atomically (temporary file and rename) with data and mode perm.
func writeFile(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	_, werr := f.Write(data)
	err = errors.Join(werr, f.Chmod(perm), f.Close())
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
