package thread

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

// bodyOf is the reference the streaming BodyHasher must agree with: what follows the first
// empty line (CRLF or bare LF), or nil if there is none.
func bodyOf(raw []byte) []byte {
	for i := 0; i < len(raw); {
		j := bytes.IndexByte(raw[i:], '\n')
		if j < 0 {
			return nil
		}
		line := raw[i : i+j]
		i += j + 1
		if len(line) == 0 || (len(line) == 1 && line[0] == '\r') {
			return raw[i:]
		}
	}
	return nil
}

// FuzzBodyHasher checks that the body digest computed while a message streams through in
// arbitrary chunks equals the digest of the body cut out of the whole message, so synthetic
// thread keys do not depend on how the message arrived.
func FuzzBodyHasher(f *testing.F) {
	f.Add([]byte("Subject: x\r\n\r\nbody\r\n"), uint8(3))
	f.Add([]byte("Subject: x\n\nbody"), uint8(1))
	f.Add([]byte("\r\n"), uint8(1))
	f.Add([]byte("\n"), uint8(0))
	f.Add([]byte("a\r\r\n\r"), uint8(2))
	f.Add([]byte("no body at all"), uint8(5))
	f.Add([]byte("A: b\r\n \r\n\r\nx"), uint8(4))
	f.Fuzz(func(t *testing.T, raw []byte, chunk uint8) {
		b := NewBodyHasher()
		step := int(chunk) + 1
		for i := 0; i < len(raw); i += step {
			_, _ = b.Write(raw[i:min(i+step, len(raw))])
		}
		sum := sha256.Sum256(bodyOf(raw))
		if got, want := b.Digest(), hex.EncodeToString(sum[:]); got != want {
			t.Fatalf("streamed digest %s, whole-message digest %s", got, want)
		}
	})
}
