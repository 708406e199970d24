package server

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mxgate/mxgate/internal/config"
)

// certCheckInterval is how often, at most, a handshake looks at the
// certificate files for a change. A variable so tests can shorten it.
var certCheckInterval = 10 * time.Second

// serverTLS returns the STARTTLS configuration for cfg, or nil when no
// certificate is configured (no STARTTLS). A certificate and key that do
// not load are an error naming both files.
func serverTLS(cfg config.TLS, log *slog.Logger) (*tls.Config, error) {
	if cfg.Cert == "" && cfg.Key == "" {
		return nil, nil
	}
	l, err := newCertLoader(cfg.Cert, cfg.Key, log)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: l.GetCertificate,
	}, nil
}

// fileStamp identifies one version of the certificate and key files. A
// file that cannot be looked at is part of the version through its error,
// so its warning is logged once too.
type fileStamp struct {
	certMod, keyMod   time.Time
	certSize, keySize int64
	statErr           string
}

func stampOf(certFile, keyFile string) fileStamp {
	var s fileStamp
	ci, err := os.Stat(certFile)
	if err != nil {
		s.statErr = err.Error()
		return s
	}
	ki, err := os.Stat(keyFile)
	if err != nil {
		s.statErr = err.Error()
		return s
	}
	s.certMod, s.certSize = ci.ModTime(), ci.Size()
	s.keyMod, s.keySize = ki.ModTime(), ki.Size()
	return s
}

func (s fileStamp) equal(o fileStamp) bool {
	return s.certMod.Equal(o.certMod) && s.keyMod.Equal(o.keyMod) &&
		s.certSize == o.certSize && s.keySize == o.keySize && s.statErr == o.statErr
}

// certLoader serves the configured certificate to handshakes
// (tls.Config.GetCertificate) and loads it again when either file's
// modification time or size changed (certbot renewals, without a restart).
// The files are looked at on a handshake, at most once every
// certCheckInterval. When the new files do not load (a half-written
// renewal, a key that does not match) the previous certificate stays in
// use and a warning is logged, once per failed version of the files.
type certLoader struct {
	certFile, keyFile string
	interval          time.Duration
	log               *slog.Logger

	cert atomic.Pointer[tls.Certificate]

	// mu is held by the one handshake that checks the files; the others
	// carry on with the current certificate meanwhile.
	mu      sync.Mutex
	checked time.Time // the last check
	loaded  fileStamp // the version in cert
	failed  fileStamp // the last version that did not load
	hasFail bool
}

func newCertLoader(certFile, keyFile string, log *slog.Logger) (*certLoader, error) {
	l := &certLoader{certFile: certFile, keyFile: keyFile, interval: certCheckInterval, log: log}
	st := stampOf(certFile, keyFile)
	c, err := l.load()
	if err != nil {
		return nil, err
	}
	l.cert.Store(c)
	l.loaded, l.checked = st, time.Now()
	return l, nil
}

func (l *certLoader) load() (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(l.certFile, l.keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: certificate %s and key %s: %w", l.certFile, l.keyFile, err)
	}
	return &c, nil
}

// GetCertificate is the tls.Config hook.
func (l *certLoader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	l.maybeReload(time.Now())
	return l.cert.Load(), nil
}

func (l *certLoader) maybeReload(now time.Time) {
	if !l.mu.TryLock() {
		return // another handshake is checking
	}
	defer l.mu.Unlock()
	if now.Sub(l.checked) < l.interval {
		return
	}
	l.checked = now
	// The stamp is taken before the files are read: should they change
	// while being read, the next check sees a new version and reads again.
	st := stampOf(l.certFile, l.keyFile)
	if st.equal(l.loaded) || l.hasFail && st.equal(l.failed) {
		return
	}
	var c *tls.Certificate
	err := fmt.Errorf("tls: %s", st.statErr)
	if st.statErr == "" {
		c, err = l.load()
	}
	if err != nil {
		l.failed, l.hasFail = st, true
		l.log.Warn("TLS certificate files changed but do not load; still serving the previous certificate",
			"cert", l.certFile, "key", l.keyFile, "err", err)
		return
	}
	l.cert.Store(c)
	l.loaded, l.hasFail = st, false
	args := []any{"cert", l.certFile, "key", l.keyFile}
	if c.Leaf != nil {
		args = append(args, "subject", c.Leaf.Subject.CommonName, "serial", c.Leaf.SerialNumber.String(), "not_after", c.Leaf.NotAfter)
	}
	l.log.Info("TLS certificate reloaded", args...)
}
