package httpd

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/mailpipe/mailpipe/pkg/ingest"
)

// apiKey is one accepted API key: the SHA-256 of the key and the tenant it belongs to.
type apiKey struct {
	tenant string
	sum    []byte
}

// lookupKey returns the tenants of key (one, unless the same key is configured for several).
// It compares the key's SHA-256 with every configured hash in constant time: hashing first
// makes the comparison length-independent, and checking all entries without an early return
// keeps the time independent of which entry matched.
func lookupKey(keys []apiKey, key string) []string {
	if key == "" {
		return nil
	}
	sum := sha256.Sum256([]byte(key))
	var tenants []string
	for _, k := range keys {
		if subtle.ConstantTimeCompare(sum[:], k.sum) == 1 {
			tenants = append(tenants, k.tenant)
		}
	}
	return tenants
}

// bearerKey returns the key of an "Authorization: Bearer <key>" header (scheme
// case-insensitive), or "" without one.
func bearerKey(r *http.Request) string {
	scheme, key, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(key)
}

// bearerOrBasicKey returns the Bearer key, or else the password of HTTP Basic credentials (the
// user name is ignored), which is how a key put in a URL's userinfo arrives.
func bearerOrBasicKey(r *http.Request) string {
	if k := bearerKey(r); k != "" {
		return k
	}
	_, password, _ := r.BasicAuth()
	return password
}

// permits reports whether a credential of tenant may deliver to a recipient of route: the route
// is the tenant's, or it is the domain list fallback (no route id, tenant "default"), which
// predates tenants and takes any valid credential.
func permits(tenant string, r ingest.Route) bool {
	return r.Tenant == tenant || fallback(r)
}

// fallback reports whether r comes from the domain list fallback (ingest.DomainRouter).
func fallback(r ingest.Route) bool {
	return r.ID == "" && r.Tenant == ingest.DefaultTenant
}
