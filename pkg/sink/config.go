package sink

import (
	"errors"
	"time"

	"github.com/mailpipe/mailpipe/pkg/lake"
)

// Config is the crm-sink's own configuration, loaded with envconf (MAILPIPE_SINK_* when nested
// under `env:"SINK"`). The connectors' configs live in their packages.
type Config struct {
	// DedupeTTL is how long a confirmed delivery is remembered; default 24h.
	DedupeTTL time.Duration `env:"DEDUPE_TTL" default:"24h" usage:"how long a confirmed CRM delivery is remembered in the dedupe store"`
	// LakeSalt salts the sender hash of lake rows; a per-deployment secret of at least 16
	// bytes. Required. Changing it breaks the continuity of from_hash.
	LakeSalt string `env:"LAKE_SALT" usage:"per-deployment secret salting the lake rows' sender hash (at least 16 bytes)"`
}

// Validate reports every problem of c, one per line.
func (c Config) Validate() error {
	var errs []error
	if c.DedupeTTL < 0 {
		errs = append(errs, errors.New("dedupe_ttl must not be negative"))
	}
	if len(c.LakeSalt) < lake.MinSaltLen {
		errs = append(errs, errors.New("lake_salt is required and must be at least 16 bytes"))
	}
	return errors.Join(errs...)
}

// Options returns the options that apply c; a zero DedupeTTL keeps the default.
func (c Config) Options() []Option {
	opts := []Option{WithLakeSalt(c.LakeSalt)}
	if c.DedupeTTL > 0 {
		opts = append(opts, WithDedupeTTL(c.DedupeTTL))
	}
	return opts
}
