// Package blobkey holds the key rules and errors shared by package blob and its
// implementations, which cannot import blob itself (blob.Open imports them).
package blobkey

import (
	"errors"
	"fmt"
	"strings"
)

// Limits: a key stays well inside S3's 1024-byte limit and PATH_MAX; a segment fits NAME_MAX
// (255) together with the suffix of the file backend's temporary names (".<16 hex>.tmp").
const (
	MaxLen        = 512
	MaxSegmentLen = 224
)

// Sentinels re-exported by package blob.
var (
	ErrInvalidKey = errors.New("invalid blob key")
	ErrInvalidRef = errors.New("invalid blob ref")
)

// Validate reports whether key follows the rules documented on blob.Store.Put.
func Validate(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	}
	if len(key) > MaxLen {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrInvalidKey, len(key), MaxLen)
	}
	for seg := range strings.SplitSeq(key, "/") {
		switch {
		case seg == "":
			return fmt.Errorf("%w: %q has an empty segment (leading, trailing or double slash)", ErrInvalidKey, key)
		case seg[0] == '.':
			return fmt.Errorf("%w: %q has a segment starting with a dot", ErrInvalidKey, key)
		case len(seg) > MaxSegmentLen:
			return fmt.Errorf("%w: a segment of %d bytes, at most %d", ErrInvalidKey, len(seg), MaxSegmentLen)
		}
		for i := 0; i < len(seg); i++ {
			if !allowed(seg[i]) {
				return fmt.Errorf("%w: %q has byte %q at %d; allowed are A-Z a-z 0-9 . _ - ~ = + @", ErrInvalidKey, key, seg[i], i)
			}
		}
	}
	return nil
}

func allowed(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("._-~=+@", c) >= 0
}
