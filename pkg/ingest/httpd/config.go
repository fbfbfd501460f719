package httpd

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/mailpipe/mailpipe/pkg/ingest"
	"github.com/mailpipe/mailpipe/pkg/ingest/httpd/mailgun"
	"github.com/mailpipe/mailpipe/pkg/ingest/httpd/sendgrid"
	"github.com/mailpipe/mailpipe/pkg/route"
	"github.com/mailpipe/mailpipe/pkg/webhooksig"
)

// Environment variable names of [Config], relative to the prefix the service gives the section
// (the ingress service reads them as MAILPIPE_HTTP_<NAME>).
const (
	EnvAPIKeySHA256           = "API_KEY_SHA256"
	EnvAPIKeys                = "API_KEYS"
	EnvAPIKeysFile            = "API_KEYS_FILE"
	EnvHMACSecrets            = "HMAC_SECRETS"
	EnvHMACSecretsFile        = "HMAC_SECRETS_FILE"
	EnvHMACTolerance          = "HMAC_TOLERANCE"
	EnvSendGridPublicKeys     = "SENDGRID_PUBLIC_KEYS"
	EnvSendGridTolerance      = "SENDGRID_TOLERANCE"
	EnvMailgunSigningKeys     = "MAILGUN_SIGNING_KEYS"
	EnvMailgunSigningKeysFile = "MAILGUN_SIGNING_KEYS_FILE"
	EnvMailgunTolerance       = "MAILGUN_TOLERANCE"
	EnvMaxBodyBytes           = "MAX_BODY_BYTES"
	EnvMaxRecipients          = "MAX_RECIPIENTS"
	EnvAcceptTimeout          = "ACCEPT_TIMEOUT"
	EnvRetryAfter             = "RETRY_AFTER"
)

// Defaults of [Config].
const (
	DefaultMaxBodyBytes  = 25 << 20 // as smtpd's DefaultMaxMessageBytes
	DefaultMaxRecipients = 100
	DefaultAcceptTimeout = 30 * time.Second
	DefaultRetryAfter    = 30 * time.Second
	// DefaultHMACTolerance is the Standard Webhooks recommendation: senders sign every attempt
	// anew, so a retry always carries a fresh timestamp.
	DefaultHMACTolerance = webhooksig.DefaultTolerance
	// DefaultSendGridTolerance covers SendGrid's three days of retries plus an hour: its docs
	// do not say whether a retried post is signed anew, and a window shorter than the retry
	// period would turn a retry after an outage into a 401 and lose the message. Replays inside
	// the window are recorded once (the signed content is the id), so the cost of the long
	// window is replay-store memory, not duplicates.
	DefaultSendGridTolerance = 73 * time.Hour
	// DefaultMailgunTolerance covers Mailgun's 8 hours of retries plus an hour, for the same
	// reason; each token is recorded once inside it.
	DefaultMailgunTolerance = 9 * time.Hour
)

// Config configures the handler. Zero fields take the defaults.
//
// Credential lists hold "tenant:value" entries; a tenant may have several (rotation), and the
// same tenant may appear in the environment list and in the file. Tenant names follow the route
// table's rules (route.ValidTenant). Problems are reported by position, never by value.
type Config struct {
	// APIKeySHA256 are API keys of tenant "default", each the hex SHA-256 of the key: the
	// configuration from before tenants, kept working. Prefer APIKeys.
	APIKeySHA256 []string `env:"API_KEY_SHA256" usage:"hex sha256 of each API key of tenant default, comma-separated (prefer API_KEYS)"`
	// APIKeys are API keys per tenant, each "tenant:<hex sha256 of the key>", so the
	// configuration (ConfigMap, env dump) never holds a usable secret.
	APIKeys []string `env:"API_KEYS" usage:"API keys per tenant as tenant:hex-sha256-of-key, comma-separated"`
	// APIKeysFile names a file of more APIKeys entries, one per line; blank lines and lines
	// starting with # are skipped. It is read when the handler is built.
	APIKeysFile string `env:"API_KEYS_FILE" usage:"file of tenant:hex-sha256-of-key lines (# comments), added to API_KEYS"`
	// HMACSecrets are Standard Webhooks signing secrets per tenant, each
	// "tenant:whsec_<base64 of a 24 to 64 byte key>", for POST /v1/messages without an API key.
	// A tenant may have several (rotation: a signature by any of them is accepted).
	HMACSecrets []string `env:"HMAC_SECRETS" usage:"Standard Webhooks secrets per tenant as tenant:whsec_..., comma-separated"`
	// HMACSecretsFile names a file of more HMACSecrets entries, one per line, as APIKeysFile.
	HMACSecretsFile string `env:"HMAC_SECRETS_FILE" usage:"file of tenant:whsec_... lines (# comments), added to HMAC_SECRETS"`
	// HMACTolerance is how far webhook-timestamp may be from the server clock, either way;
	// older or newer signatures get 401. Replays inside the window are caught by webhook-id.
	// Default 5m.
	HMACTolerance time.Duration `env:"HMAC_TOLERANCE" default:"5m" usage:"accepted clock difference of HMAC-signed requests"`
	// SendGridPublicKeys verify signed SendGrid Inbound Parse posts, each "tenant:<public key of
	// the Parse webhook security policy, base64 DER as SendGrid's API returns it>". Public keys
	// are not secrets; the same key may be given to several tenants.
	SendGridPublicKeys []string `env:"SENDGRID_PUBLIC_KEYS" usage:"SendGrid Inbound Parse security policy public keys as tenant:base64-DER, comma-separated"`
	// SendGridTolerance is the accepted age (either way) of a SendGrid signature timestamp.
	// Default 73h (see DefaultSendGridTolerance).
	SendGridTolerance time.Duration `env:"SENDGRID_TOLERANCE" default:"73h" usage:"accepted clock difference of signed SendGrid posts"`
	// MailgunSigningKeys verify Mailgun forward() posts, each "tenant:<HTTP webhook signing
	// key>". One Mailgun account has one key; give it to every tenant the account serves.
	MailgunSigningKeys []string `env:"MAILGUN_SIGNING_KEYS" usage:"Mailgun HTTP webhook signing keys as tenant:key, comma-separated"`
	// MailgunSigningKeysFile names a file of more MailgunSigningKeys entries, as APIKeysFile.
	MailgunSigningKeysFile string `env:"MAILGUN_SIGNING_KEYS_FILE" usage:"file of tenant:key lines (# comments), added to MAILGUN_SIGNING_KEYS"`
	// MailgunTolerance is the accepted age (either way) of a Mailgun signature timestamp.
	// Default 9h (see DefaultMailgunTolerance).
	MailgunTolerance time.Duration `env:"MAILGUN_TOLERANCE" default:"9h" usage:"accepted clock difference of signed Mailgun posts"`
	// MaxBodyBytes bounds the request body; larger requests get 413. Default 25 MiB.
	MaxBodyBytes int64 `env:"MAX_BODY_BYTES" default:"26214400" usage:"largest request body accepted over HTTP, bytes"`
	// MaxRecipients bounds rcpt_to entries; more get 400. Default 100.
	MaxRecipients int `env:"MAX_RECIPIENTS" default:"100" usage:"recipients per HTTP request"`
	// AcceptTimeout bounds recording one message (claim check plus produce) beyond the
	// request's own context. Default 30s.
	AcceptTimeout time.Duration `env:"ACCEPT_TIMEOUT" default:"30s" usage:"deadline for recording one message"`
	// RetryAfter is sent with 503 so clients back off. Default 30s.
	RetryAfter time.Duration `env:"RETRY_AFTER" default:"30s" usage:"Retry-After sent with 503"`
}

// DefaultConfig returns the defaults, with no credentials.
func DefaultConfig() Config {
	return Config{
		MaxBodyBytes:  DefaultMaxBodyBytes,
		MaxRecipients: DefaultMaxRecipients,
		AcceptTimeout: DefaultAcceptTimeout,
		RetryAfter:    DefaultRetryAfter,
		HMACTolerance: DefaultHMACTolerance,

		SendGridTolerance: DefaultSendGridTolerance,
		MailgunTolerance:  DefaultMailgunTolerance,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = d.MaxBodyBytes
	}
	if c.MaxRecipients == 0 {
		c.MaxRecipients = d.MaxRecipients
	}
	if c.AcceptTimeout == 0 {
		c.AcceptTimeout = d.AcceptTimeout
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = d.RetryAfter
	}
	if c.HMACTolerance == 0 {
		c.HMACTolerance = DefaultHMACTolerance
	}
	if c.SendGridTolerance == 0 {
		c.SendGridTolerance = DefaultSendGridTolerance
	}
	if c.MailgunTolerance == 0 {
		c.MailgunTolerance = DefaultMailgunTolerance
	}
	return c
}

// Validate checks the configuration after defaults are applied, reading the credential files;
// the error joins every problem.
func (c Config) Validate() error {
	_, err := c.credentials()
	return errors.Join(err, c.withDefaults().checkLimits())
}

// checkLimits checks the sizes and durations.
func (c Config) checkLimits() error {
	var errs []error
	if c.MaxBodyBytes < 0 {
		errs = append(errs, errors.New("max body bytes must not be negative"))
	}
	if c.MaxRecipients < 0 {
		errs = append(errs, errors.New("max recipients must not be negative"))
	}
	if c.AcceptTimeout < 0 || c.RetryAfter < 0 || c.HMACTolerance < 0 || c.SendGridTolerance < 0 || c.MailgunTolerance < 0 {
		errs = append(errs, errors.New("timeouts and tolerances must not be negative"))
	}
	return errors.Join(errs...)
}

// HashKey returns the hex SHA-256 of an API key, the form [Config].APIKeys takes after the
// tenant (`printf %s "$KEY" | sha256sum` gives the same).
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// credentials are the parsed credential lists of a Config.
type credentials struct {
	apiKeys  []apiKey
	hmac     map[string][]webhooksig.Secret // by tenant
	sendgrid []tenantKey[sendgrid.PublicKey]
	mailgun  []tenantKey[mailgun.SigningKey]
}

// tenantKey is a provider's verification key and the tenant it authenticates.
type tenantKey[K any] struct {
	tenant string
	key    K
}

// credentials parses every credential list and file of c.
func (c Config) credentials() (credentials, error) {
	var (
		cr   credentials
		errs []error
	)
	for i, h := range c.APIKeySHA256 {
		sum, err := parseKeyHash(h)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s entry %d: %w", EnvAPIKeySHA256, i+1, err))
			continue
		}
		cr.apiKeys = append(cr.apiKeys, apiKey{tenant: ingest.DefaultTenant, sum: sum})
	}
	entries, err := tenantEntries(EnvAPIKeys, c.APIKeys, EnvAPIKeysFile, c.APIKeysFile)
	errs = append(errs, err)
	for _, e := range entries {
		sum, err := parseKeyHash(e.value)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", e.where, err))
			continue
		}
		cr.apiKeys = append(cr.apiKeys, apiKey{tenant: e.tenant, sum: sum})
	}
	entries, err = tenantEntries(EnvHMACSecrets, c.HMACSecrets, EnvHMACSecretsFile, c.HMACSecretsFile)
	errs = append(errs, err)
	for _, e := range entries {
		sec, err := webhooksig.ParseSecret(e.value)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", e.where, err))
			continue
		}
		if cr.hmac == nil {
			cr.hmac = make(map[string][]webhooksig.Secret)
		}
		cr.hmac[e.tenant] = append(cr.hmac[e.tenant], sec)
	}
	entries, err = tenantEntries(EnvSendGridPublicKeys, c.SendGridPublicKeys, "", "")
	errs = append(errs, err)
	for _, e := range entries {
		k, err := sendgrid.ParsePublicKey(e.value)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", e.where, err))
			continue
		}
		cr.sendgrid = append(cr.sendgrid, tenantKey[sendgrid.PublicKey]{e.tenant, k})
	}
	entries, err = tenantEntries(EnvMailgunSigningKeys, c.MailgunSigningKeys, EnvMailgunSigningKeysFile, c.MailgunSigningKeysFile)
	errs = append(errs, err)
	for _, e := range entries {
		k, err := mailgun.ParseSigningKey(e.value)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", e.where, err))
			continue
		}
		cr.mailgun = append(cr.mailgun, tenantKey[mailgun.SigningKey]{e.tenant, k})
	}
	return cr, errors.Join(errs...)
}

func parseKeyHash(h string) ([]byte, error) {
	b, err := hex.DecodeString(strings.TrimSpace(h))
	if err != nil || len(b) != sha256.Size {
		return nil, errors.New("api key sha256 is not 64 hex digits")
	}
	return b, nil
}

// tenantEntry is one "tenant:value" credential entry and where it came from, for errors that
// must not quote the value.
type tenantEntry struct {
	tenant, value, where string
}

// tenantEntries reads the "tenant:value" entries of list (from environment variable listName)
// and of the file named file (from fileName; none when empty). Entries with a bad tenant are
// reported and left out.
func tenantEntries(listName string, list []string, fileName, file string) ([]tenantEntry, error) {
	var (
		out  []tenantEntry
		errs []error
	)
	add := func(where, entry string) {
		tenant, value, ok := strings.Cut(strings.TrimSpace(entry), ":")
		tenant, value = strings.TrimSpace(tenant), strings.TrimSpace(value)
		switch {
		case !ok || value == "":
			errs = append(errs, fmt.Errorf("%s: want tenant:value", where))
		case !route.ValidTenant(tenant):
			// The name is not quoted: a mistyped entry may put part of a secret there.
			errs = append(errs, fmt.Errorf("%s: the tenant is not a valid tenant name (1 to 63 of a-z, 0-9, '.', '_', '-')", where))
		default:
			out = append(out, tenantEntry{tenant: tenant, value: value, where: where})
		}
	}
	for i, e := range list {
		add(fmt.Sprintf("%s entry %d", listName, i+1), e)
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return out, errors.Join(append(errs, fmt.Errorf("%s: reading %w", fileName, err))...)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			add(fmt.Sprintf("%s %s line %d", fileName, file, n), line)
		}
		if err := sc.Err(); err != nil {
			errs = append(errs, fmt.Errorf("%s: reading %s: %w", fileName, file, err))
		}
	}
	return out, errors.Join(errs...)
}
