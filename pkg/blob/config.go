package blob

import (
	"context"
	"errors"
	"fmt"
	"net/url"
)

// Environment variable names of [Config], relative to the prefix the service gives the section
// (MAILPIPE_BLOB_URL, MAILPIPE_BLOB_KEYS when the section is loaded as "BLOB").
const (
	EnvURL  = "URL"
	EnvKeys = "KEYS"
)

// Config is the blob store configuration.
type Config struct {
	// URL of the store; empty disables it (claim check and attachment storage off). See Open.
	URL string `env:"URL" usage:"blob store URL: file:///var/lib/mailpipe/blobs or s3://bucket/prefix?region=…[&endpoint=http://minio:9000&use_path_style=true] (optional)"`
	// Keys turn on encryption at rest: comma-separated "id=keyURL" entries, the first one the
	// primary that encrypts new blobs, the others kept to read blobs written before a rotation.
	// Key URLs: base64key://<32 bytes base64url> (development), awskms://…, hashivault://…; see
	// OpenKeyring. Empty: blobs are stored in the clear.
	Keys []string `env:"KEYS" usage:"encryption at rest: id=keyURL,… (base64key://, awskms://, hashivault://); the first encrypts new blobs (optional)"`
}

// Validate checks the configuration without opening anything. Errors never quote key URLs.
func (c Config) Validate() error {
	var errs []error
	if c.URL != "" {
		if u, err := url.Parse(c.URL); err != nil || u.Scheme == "" {
			errs = append(errs, errors.New("url: want file:///path or s3://bucket"))
		}
	}
	if len(c.Keys) > 0 {
		if c.URL == "" {
			errs = append(errs, errors.New("keys are set but no url: nothing would be encrypted"))
		}
		if err := validateKeySpecs(c.Keys); err != nil {
			errs = append(errs, fmt.Errorf("keys: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Open opens the configured store, encrypted when keys are configured, or returns nil, nil when
// no URL is. The store implements io.Closer.
func (c Config) Open(ctx context.Context) (Store, error) {
	if c.URL == "" {
		return nil, nil
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if len(c.Keys) == 0 {
		return Open(ctx, c.URL)
	}
	keys, err := OpenKeyring(ctx, c.Keys)
	if err != nil {
		return nil, fmt.Errorf("opening blob keys: %w", err)
	}
	s, err := Open(ctx, c.URL, WithKeyring(keys))
	if err != nil {
		_ = keys.Close()
		return nil, err
	}
	return s, nil
}
