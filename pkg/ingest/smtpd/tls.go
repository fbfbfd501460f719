package smtpd

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"
)

var tlsVersions = map[string]uint16{
	"1.0": tls.VersionTLS10,
	"1.1": tls.VersionTLS11,
	"1.2": tls.VersionTLS12,
	"1.3": tls.VersionTLS13,
}

// validateTLS checks TLSMinVersion and TLSCipherSuites (after defaults).
func (c Config) validateTLS() error {
	var errs []error
	minVersion, ok := tlsVersions[c.TLSMinVersion]
	if !ok {
		errs = append(errs, fmt.Errorf("tls min version %q is not one of 1.0, 1.1, 1.2, 1.3", c.TLSMinVersion))
	}
	if _, err := cipherSuiteIDs(c.TLSCipherSuites); err != nil {
		errs = append(errs, err)
	}
	if ok && minVersion == tls.VersionTLS13 && len(c.TLSCipherSuites) > 0 {
		errs = append(errs, errors.New("tls cipher suites apply to TLS 1.2 and below; with tls min version 1.3 they have no effect"))
	}
	return errors.Join(errs...)
}

// cipherSuiteIDs maps IANA names to ids. It refuses insecure suites and TLS 1.3 suites, which Go
// does not let a server configure.
func cipherSuiteIDs(names []string) ([]uint16, error) {
	var ids []uint16
	var errs []error
	for _, name := range names {
		if s := findSuite(tls.CipherSuites(), name); s != nil {
			if slices.Equal(s.SupportedVersions, []uint16{tls.VersionTLS13}) {
				errs = append(errs, fmt.Errorf("tls cipher suite %s is a TLS 1.3 suite; Go always enables those and cannot configure them", name))
				continue
			}
			ids = append(ids, s.ID)
			continue
		}
		if findSuite(tls.InsecureCipherSuites(), name) != nil {
			errs = append(errs, fmt.Errorf("tls cipher suite %s is insecure (crypto/tls lists it in InsecureCipherSuites)", name))
			continue
		}
		errs = append(errs, fmt.Errorf("tls cipher suite %q is unknown; use an IANA name such as TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", name))
	}
	return ids, errors.Join(errs...)
}

func findSuite(suites []*tls.CipherSuite, name string) *tls.CipherSuite {
	for _, s := range suites {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// serverTLS builds the STARTTLS configuration from a validated cfg: nil when STARTTLS is off.
func serverTLS(cfg Config, log *slog.Logger) (*tls.Config, error) {
	var out *tls.Config
	switch {
	case cfg.TLSCertFile != "":
		r := &certReloader{certFile: cfg.TLSCertFile, keyFile: cfg.TLSKeyFile, every: certCheckEvery, log: log}
		if err := r.load(); err != nil {
			return nil, err
		}
		out = &tls.Config{GetCertificate: r.get}
	case cfg.TLS != nil:
		out = cfg.TLS.Clone()
	default:
		return nil, nil
	}
	// The configured version is a floor: a ready config asking for more keeps its own.
	if minVersion := tlsVersions[cfg.TLSMinVersion]; out.MinVersion < minVersion {
		out.MinVersion = minVersion
	}
	if len(cfg.TLSCipherSuites) > 0 {
		ids, err := cipherSuiteIDs(cfg.TLSCipherSuites)
		if err != nil {
			return nil, err
		}
		out.CipherSuites = ids
	}
	return out, nil
}

// certCheckEvery is how often the certificate files are checked for a renewal.
const certCheckEvery = 30 * time.Second

// certReloader serves the certificate in TLSCertFile/TLSKeyFile and reads them again when their
// modification time changes, so a renewed certificate (cert-manager updating a Secret volume,
// certbot) is served without a restart. The files are checked at most once per every, during a
// handshake; a pair that fails to load is logged and the previous one kept.
type certReloader struct {
	certFile, keyFile string
	every             time.Duration
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   [2]time.Time // modification times of the loaded files
	checked time.Time
}

// load reads the pair; New calls it so that a bad pair fails at start.
func (r *certReloader) load() error {
	stamp, err := r.stat()
	if err == nil {
		var cert tls.Certificate
		if cert, err = tls.LoadX509KeyPair(r.certFile, r.keyFile); err == nil {
			r.cert, r.stamp, r.checked = &cert, stamp, time.Now()
			return nil
		}
	}
	return fmt.Errorf("loading smtp tls certificate: %w", err)
}

func (r *certReloader) stat() ([2]time.Time, error) {
	var stamp [2]time.Time
	for i, f := range []string{r.certFile, r.keyFile} {
		info, err := os.Stat(f)
		if err != nil {
			return stamp, err
		}
		stamp[i] = info.ModTime()
	}
	return stamp, nil
}

// get implements tls.Config.GetCertificate.
func (r *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) < r.every {
		return r.cert, nil
	}
	r.checked = time.Now()
	if stamp, err := r.stat(); err == nil && stamp == r.stamp {
		return r.cert, nil
	}
	if err := r.load(); err != nil {
		// Keep serving the previous certificate (load changed nothing): a half-written renewal
		// must not take STARTTLS down. The next check tries again.
		r.log.Warn("could not reload the smtp tls certificate; serving the previous one", slog.String("error", err.Error()))
		return r.cert, nil
	}
	r.log.Info("reloaded the smtp tls certificate", slog.String("file", r.certFile))
	return r.cert, nil
}

func tlsVersion(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLS1.0"
	case tls.VersionTLS11:
		return "TLS1.1"
	case tls.VersionTLS12:
		return "TLS1.2"
	case tls.VersionTLS13:
		return "TLS1.3"
	default:
		return fmt.Sprintf("0x%04x", v)
	}
}
