package blob

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"

	vault "github.com/hashicorp/vault/api"
	"gocloud.dev/secrets"
	"gocloud.dev/secrets/awskms"
	"gocloud.dev/secrets/hashivault"
	"gocloud.dev/secrets/localsecrets"
)

// Key URL schemes OpenKeyring understands, registered here explicitly rather than through
// gocloud's global URL mux (no global state, STYLE.md habit 5).
const (
	// KeySchemeBase64 is a local 32-byte key, base64url in the host: for development and
	// tests. Generate one with `openssl rand 32 | basenc --base64url`.
	KeySchemeBase64 = localsecrets.Scheme // base64key://
	// KeySchemeAWSKMS is an AWS KMS key: awskms:///arn:aws:kms:…, awskms://alias/name?region=….
	// Credentials come from the AWS default chain.
	KeySchemeAWSKMS = awskms.Scheme // awskms://
	// KeySchemeVault is a HashiCorp Vault transit key: hashivault://key-name. The Vault client
	// reads its standard environment (VAULT_ADDR, VAULT_TOKEN, VAULT_CACERT, …).
	KeySchemeVault = hashivault.Scheme // hashivault://
)

// MaxKeyIDLen bounds a key id; ids are A-Z a-z 0-9 . _ - and travel in every blob ref.
const MaxKeyIDLen = 64

// ErrUnknownKey is wrapped by an Encrypted store's Get when a blob was encrypted under a key id
// the keyring does not hold (a retired key, or a keyring missing an entry).
var ErrUnknownKey = errors.New("blob encrypted under a key id the keyring does not hold")

// Keyring holds the key-encryption keys of an [Encrypted] store by key id: the primary key wraps
// the data key of every new blob; the others only unwrap the data keys of blobs written before a
// rotation. It is safe for concurrent use.
//
// To rotate: add the new key in front (it becomes primary) and keep the old one until no record
// still referencing a blob under it is retained or replayed; refs carry the key id (kid=…), so
// the topics say which keys are still needed.
type Keyring struct {
	primary string
	keepers map[string]*secrets.Keeper
	close   sync.Once
}

// NewKeyring returns a keyring over keepers, which it owns (Close closes them). primary must be
// one of the ids.
func NewKeyring(primary string, keepers map[string]*secrets.Keeper) (*Keyring, error) {
	var errs []error
	for id, k := range keepers {
		if err := validKeyID(id); err != nil {
			errs = append(errs, err)
		}
		if k == nil {
			errs = append(errs, fmt.Errorf("key %q has no keeper", id))
		}
	}
	if _, ok := keepers[primary]; !ok {
		errs = append(errs, fmt.Errorf("primary key %q is not in the keyring", primary))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Keyring{primary: primary, keepers: keepers}, nil
}

// OpenKeyring opens a keyring from "id=keyURL" specs (the MAILPIPE_BLOB_KEYS entries); the first
// is the primary. Key URLs use the schemes above. Errors never quote a key URL, which may hold
// key material (base64key://).
func OpenKeyring(ctx context.Context, specs []string) (*Keyring, error) {
	if err := validateKeySpecs(specs); err != nil {
		return nil, err
	}
	keepers := make(map[string]*secrets.Keeper, len(specs))
	var primary string
	var vaultClient *vault.Client
	for i, spec := range specs {
		id, raw, _ := strings.Cut(strings.TrimSpace(spec), "=")
		u, _ := url.Parse(raw) // validated above
		k, err := openKeeper(ctx, u, &vaultClient)
		if err != nil {
			for _, k := range keepers {
				_ = k.Close()
			}
			return nil, fmt.Errorf("opening key %q: %w", id, err)
		}
		keepers[id] = k
		if i == 0 {
			primary = id
		}
	}
	return NewKeyring(primary, keepers)
}

// validateKeySpecs checks "id=keyURL" specs without opening anything.
func validateKeySpecs(specs []string) error {
	if len(specs) == 0 {
		return errors.New("at least one key is required")
	}
	var errs []error
	seen := map[string]bool{}
	for i, spec := range specs {
		id, raw, ok := strings.Cut(strings.TrimSpace(spec), "=")
		if !ok {
			errs = append(errs, fmt.Errorf("key %d is not id=url", i+1))
			continue
		}
		if validKeyID(id) != nil {
			// Not quoted: a malformed entry may have its key URL where the id should be.
			errs = append(errs, fmt.Errorf("key %d: the id must be 1 to %d of A-Z a-z 0-9 . _ -", i+1, MaxKeyIDLen))
			continue
		}
		if seen[id] {
			errs = append(errs, fmt.Errorf("key id %q is given twice", id))
		}
		seen[id] = true
		u, err := url.Parse(raw)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("key %q: not a URL", id))
		case u.Scheme != KeySchemeBase64 && u.Scheme != KeySchemeAWSKMS && u.Scheme != KeySchemeVault:
			errs = append(errs, fmt.Errorf("key %q: scheme %q, want %s, %s or %s", id, u.Scheme, KeySchemeBase64, KeySchemeAWSKMS, KeySchemeVault))
		case u.Scheme == KeySchemeBase64 && u.Host == "":
			// gocloud would make up a random key, and every blob written with it would be
			// unreadable after a restart.
			errs = append(errs, fmt.Errorf("key %q: %s:// needs the key in the URL", id, KeySchemeBase64))
		}
	}
	return errors.Join(errs...)
}

func openKeeper(ctx context.Context, u *url.URL, vaultClient **vault.Client) (*secrets.Keeper, error) {
	switch u.Scheme {
	case KeySchemeBase64:
		k, err := (&localsecrets.URLOpener{}).OpenKeeperURL(ctx, u)
		if err != nil {
			return nil, errors.New("base64key: want 32 bytes in base64url in the host, and no query")
		}
		return k, nil
	case KeySchemeAWSKMS:
		return (&awskms.URLOpener{}).OpenKeeperURL(ctx, u)
	case KeySchemeVault:
		if *vaultClient == nil {
			c, err := vault.NewClient(vault.DefaultConfig())
			if err != nil {
				return nil, fmt.Errorf("building the vault client: %w", err)
			}
			*vaultClient = c
		}
		return (&hashivault.URLOpener{Client: *vaultClient}).OpenKeeperURL(ctx, u)
	default:
		return nil, fmt.Errorf("unsupported key scheme %q", u.Scheme)
	}
}

// Primary is the id of the key new blobs are encrypted under.
func (k *Keyring) Primary() string { return k.primary }

// Close closes every keeper. It is idempotent.
func (k *Keyring) Close() error {
	var errs []error
	k.close.Do(func() {
		for id, kp := range k.keepers {
			if err := kp.Close(); err != nil {
				errs = append(errs, fmt.Errorf("closing key %q: %w", id, err))
			}
		}
	})
	return errors.Join(errs...)
}

func (k *Keyring) keeper(id string) (*secrets.Keeper, error) {
	kp, ok := k.keepers[id]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownKey, id)
	}
	return kp, nil
}

func validKeyID(id string) error {
	if id == "" || len(id) > MaxKeyIDLen {
		return fmt.Errorf("key id %q: want 1 to %d characters", id, MaxKeyIDLen)
	}
	for i := 0; i < len(id); i++ {
		if !keyIDByte(id[i]) {
			return fmt.Errorf("key id %q: byte %q at %d; allowed are A-Z a-z 0-9 . _ -", id, id[i], i)
		}
	}
	return nil
}

func keyIDByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return c == '.' || c == '_' || c == '-'
}
