package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
)

// TODO(crm): replace this file with pkg/webhooksig once it lands; it is a private stand-in so
// the connector can ship first. It implements the signing half of Standard Webhooks
// (https://www.standardwebhooks.com/): HMAC-SHA256 over "<id>.<timestamp>.<body>".

const secretPrefix = "whsec_"

// minSecretLen is the shortest decoded secret accepted; the spec recommends 24 to 64 bytes, and
// shorter keys make the HMAC guessable.
const minSecretLen = 16

// decodeSecret returns the key bytes of "whsec_<base64>" (the prefix is optional, as in the
// reference libraries).
func decodeSecret(s string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, secretPrefix))
	if err != nil {
		return nil, errors.New("secret is not whsec_ followed by standard base64")
	}
	if len(key) < minSecretLen {
		return nil, errors.New("secret is shorter than 16 bytes")
	}
	return key, nil
}

// sign returns the webhook-signature header value: one "v1,<base64 HMAC>" per key, separated
// by spaces, so a receiver holding any of the keys (old or new, during rotation) can verify.
func sign(keys [][]byte, id string, ts int64, body []byte) string {
	sigs := make([]string, 0, len(keys))
	for _, key := range keys {
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(id))
		mac.Write([]byte{'.'})
		mac.Write(strconv.AppendInt(nil, ts, 10))
		mac.Write([]byte{'.'})
		mac.Write(body)
		sigs = append(sigs, "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	}
	return strings.Join(sigs, " ")
}
