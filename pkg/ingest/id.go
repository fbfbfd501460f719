package ingest

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"time"
)

// crockford is the Crockford base32 alphabet used by ULIDs: no I, L, O or U, so ids survive
// being read aloud or retyped, and lexical order equals numeric order.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// IDLen is the length of an id made by [IDGenerator]: 26 Crockford base32 characters.
const IDLen = 26

// maxULIDTime is the largest millisecond timestamp a ULID can hold (48 bits, year 10889).
const maxULIDTime = 1<<48 - 1

// IDGenerator makes ULIDs (https://github.com/ulid/spec): a 48-bit Unix millisecond timestamp
// followed by 80 random bits, written as 26 upper-case Crockford base32 characters. Ids sort
// lexically in creation order; within one millisecond the generator is monotonic (the random part
// of the previous id plus one), so ids from one generator are strictly increasing even when the
// clock stands still or steps back.
//
// It is safe for concurrent use. The zero value is not usable; call [NewIDGenerator].
type IDGenerator struct {
	now     func() time.Time
	entropy io.Reader

	mu     sync.Mutex
	lastMS uint64
	last   [10]byte
}

// NewIDGenerator returns a generator reading the time from now and random bits from entropy.
// A nil now means time.Now; a nil entropy means crypto/rand. Tests inject both to get
// reproducible ids.
func NewIDGenerator(now func() time.Time, entropy io.Reader) *IDGenerator {
	if now == nil {
		now = time.Now
	}
	if entropy == nil {
		entropy = rand.Reader
	}
	return &IDGenerator{now: now, entropy: entropy}
}

// New returns the next id. It fails only when the entropy source fails or the clock is outside
// the ULID range (before 1970 or after year 10889).
func (g *IDGenerator) New() (string, error) {
	t := g.now()
	if t.Before(time.Unix(0, 0)) || t.UnixMilli() > maxULIDTime {
		return "", fmt.Errorf("making id: time %s is outside the ULID range", t.Format(time.RFC3339))
	}
	ms := uint64(t.UnixMilli())

	g.mu.Lock()
	defer g.mu.Unlock()
	// Monotonic within a millisecond, and never backwards: a clock that steps back (NTP) keeps
	// counting on from the last id instead of sorting new mail before old.
	if ms <= g.lastMS && g.lastMS != 0 {
		ms = g.lastMS
		if !increment(&g.last) {
			// 2^80 ids in one millisecond cannot happen with a real entropy source; moving to
			// the next millisecond keeps ids unique and ordered anyway.
			ms++
			if _, err := io.ReadFull(g.entropy, g.last[:]); err != nil {
				return "", fmt.Errorf("reading entropy: %w", err)
			}
		}
	} else if _, err := io.ReadFull(g.entropy, g.last[:]); err != nil {
		return "", fmt.Errorf("reading entropy: %w", err)
	}
	g.lastMS = ms
	return encodeULID(ms, g.last), nil
}

// increment adds one to the big-endian number in b and reports false when it wrapped to zero.
func increment(b *[10]byte) bool {
	for i := len(b) - 1; i >= 0; i-- {
		b[i]++
		if b[i] != 0 {
			return true
		}
	}
	return false
}

// encodeULID writes 48 bits of ms and 80 bits of random as 26 base32 characters (130 bits, the
// top two always zero).
func encodeULID(ms uint64, random [10]byte) string {
	var raw [16]byte
	binary.BigEndian.PutUint16(raw[0:2], uint16(ms>>32))
	binary.BigEndian.PutUint32(raw[2:6], uint32(ms))
	copy(raw[6:], random[:])
	hi := binary.BigEndian.Uint64(raw[0:8])
	lo := binary.BigEndian.Uint64(raw[8:16])

	var out [IDLen]byte
	// Walk from the least significant 5-bit group; the 128-bit number is hi:lo.
	for i := IDLen - 1; i >= 0; i-- {
		out[i] = crockford[lo&0x1f]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}
