package blob_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"net/url"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/mailpipe/mailpipe/pkg/blob"
	"github.com/mailpipe/mailpipe/pkg/blob/blobtest"
	"github.com/mailpipe/mailpipe/pkg/blob/cloudblob"
)

// newKey returns a base64key:// URL holding a fresh random key.
func newKey(t *testing.T) string {
	t.Helper()
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		t.Fatal(err)
	}
	return "base64key://" + base64.URLEncoding.EncodeToString(k[:])
}

func keyring(t *testing.T, specs ...string) *blob.Keyring {
	t.Helper()
	k, err := blob.OpenKeyring(t.Context(), specs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k.Close() })
	return k
}

// encrypted returns an encrypted store over a fresh directory, and the directory.
func encrypted(t *testing.T, keys *blob.Keyring, segSize int) (*blob.Encrypted, *cloudblob.Store) {
	t.Helper()
	inner, err := cloudblob.NewDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = inner.Close() })
	e := blob.NewEncrypted(inner, keys)
	if segSize > 0 {
		blob.SetSegmentSize(e, segSize)
	}
	return e, inner
}

func TestEncryptedConformance(t *testing.T) {
	keys := keyring(t, "k1="+newKey(t))
	for _, tt := range []struct {
		name    string
		segSize int
	}{
		{name: "64 KiB segments"},
		{name: "1 KiB segments", segSize: 1 << 10},
	} {
		t.Run(tt.name, func(t *testing.T) {
			blobtest.Run(t, func(t *testing.T) blob.Store {
				e, _ := encrypted(t, keys, tt.segSize)
				return e
			})
		})
	}
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func readAll(t *testing.T, s blob.Store, ref string) ([]byte, error) {
	t.Helper()
	rc, err := s.Get(t.Context(), ref)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rc.Close() }()
	return io.ReadAll(rc)
}

// path returns the file behind an encrypted ref of a file store.
func path(t *testing.T, ref string) string {
	t.Helper()
	u, err := url.Parse(ref)
	if err != nil {
		t.Fatal(err)
	}
	return u.Path
}

func TestEncryptedRoundTripAtSegmentEdges(t *testing.T) {
	const seg = 1 << 10
	keys := keyring(t, "k1="+newKey(t))
	e, _ := encrypted(t, keys, seg)
	for _, n := range []int{0, 1, seg - 1, seg, seg + 1, 2 * seg, 2*seg + 1, 7*seg + 513} {
		plain := randomBytes(t, n)
		ref, err := e.Put(t.Context(), "k", bytes.NewReader(plain))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(ref, "?kid=k1") {
			t.Errorf("ref %q does not name the key", ref)
		}
		got, err := readAll(t, e, ref)
		if err != nil || !bytes.Equal(got, plain) {
			t.Errorf("%d bytes: read back %d bytes, %v", n, len(got), err)
		}
		// The stored object is the header plus one 16-byte tag per segment on top of the
		// plaintext: one segment for an empty blob, and a last full segment for an exact
		// multiple (never an empty trailing one).
		info, err := os.Stat(path(t, ref))
		if err != nil {
			t.Fatal(err)
		}
		segments := max(1, (n+seg-1)/seg)
		if overhead := int(info.Size()) - n - 16*segments; overhead <= 0 || overhead > 200 {
			t.Errorf("%d bytes in %d segments stored as %d bytes (header %d)", n, segments, info.Size(), overhead)
		}
	}
}

func TestEncryptedAtRest(t *testing.T) {
	keys := keyring(t, "k1="+newKey(t))
	e, _ := encrypted(t, keys, 0)
	plain := bytes.Repeat([]byte("Subject: quarterly numbers\r\n"), 10000)
	ref1, err := e.Put(t.Context(), "a", bytes.NewReader(plain))
	if err != nil {
		t.Fatal(err)
	}
	ref2, err := e.Put(t.Context(), "b", bytes.NewReader(plain))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(path(t, ref1))
	b, _ := os.ReadFile(path(t, ref2))
	if bytes.Contains(a, []byte("quarterly")) {
		t.Error("plaintext visible in the stored object")
	}
	// A data key per object: equal plaintexts give unrelated ciphertexts.
	if bytes.Equal(a[len(a)-1000:], b[len(b)-1000:]) {
		t.Error("two objects with the same plaintext share ciphertext")
	}
}

// tamper edits the stored object in place.
func tamper(t *testing.T, ref string, edit func([]byte) []byte) {
	t.Helper()
	p := path(t, ref)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, edit(bytes.Clone(b)), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestEncryptedTamperDetection(t *testing.T) {
	const seg = 1 << 10
	const sealed = seg + 16
	plain := randomBytes(t, 3*seg+100) // segments: 3 full and a 100-byte last one
	other := keyring(t, "k1="+newKey(t))
	for _, tt := range []struct {
		name string
		edit func(t *testing.T, e *blob.Encrypted, ref string)
	}{
		{name: "bit flip in a segment", edit: func(t *testing.T, _ *blob.Encrypted, ref string) {
			tamper(t, ref, func(b []byte) []byte { b[len(b)-2*sealed] ^= 1; return b })
		}},
		{name: "bit flip in a tag", edit: func(t *testing.T, _ *blob.Encrypted, ref string) {
			tamper(t, ref, func(b []byte) []byte { b[len(b)-1] ^= 0x80; return b })
		}},
		{name: "bit flip in the nonce prefix", edit: func(t *testing.T, _ *blob.Encrypted, ref string) {
			tamper(t, ref, func(b []byte) []byte { b[10] ^= 1; return b })
		}},
		{name: "last byte cut", edit: func(t *testing.T, _ *blob.Encrypted, ref string) {
			tamper(t, ref, func(b []byte) []byte { return b[:len(b)-1] })
		}},
		{name: "last segment dropped", edit: func(t *testing.T, _ *blob.Encrypted, ref string) {
			tamper(t, ref, func(b []byte) []byte { return b[:len(b)-(100+16)] })
		}},
		{name: "segments swapped", edit: func(t *testing.T, _ *blob.Encrypted, ref string) {
			tamper(t, ref, func(b []byte) []byte {
				last := len(b) - (100 + 16)
				s1, s2 := b[last-2*sealed:last-sealed], b[last-sealed:last]
				swapped := append(append(bytes.Clone(s2), s1...), b[last:]...)
				return append(b[:last-2*sealed], swapped...)
			})
		}},
		{name: "byte appended", edit: func(t *testing.T, _ *blob.Encrypted, ref string) {
			tamper(t, ref, func(b []byte) []byte { return append(b, 0) })
		}},
		{name: "only the header left", edit: func(t *testing.T, _ *blob.Encrypted, ref string) {
			tamper(t, ref, func(b []byte) []byte { return b[:len(b)-3*sealed-116] })
		}},
		{name: "empty object", edit: func(t *testing.T, _ *blob.Encrypted, ref string) {
			tamper(t, ref, func([]byte) []byte { return nil })
		}},
		{name: "plaintext object", edit: func(t *testing.T, _ *blob.Encrypted, ref string) {
			tamper(t, ref, func([]byte) []byte { return plain })
		}},
		{name: "object moved from another key", edit: func(t *testing.T, e *blob.Encrypted, ref string) {
			// An attacker with bucket access copies another blob (say an attachment) over this one.
			src, err := e.Put(t.Context(), "att/evil", bytes.NewReader([]byte("forged")))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(path(t, src))
			tamper(t, ref, func([]byte) []byte { return b })
		}},
		{name: "object from another store under the same key id", edit: func(t *testing.T, _ *blob.Encrypted, ref string) {
			foreign, _ := encrypted(t, other, seg)
			src, err := foreign.Put(t.Context(), "raw/m", bytes.NewReader([]byte("forged")))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(path(t, src))
			tamper(t, ref, func([]byte) []byte { return b })
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e, _ := encrypted(t, keyring(t, "k1="+newKey(t)), seg)
			ref, err := e.Put(t.Context(), "raw/m", bytes.NewReader(plain))
			if err != nil {
				t.Fatal(err)
			}
			tt.edit(t, e, ref)
			got, err := readAll(t, e, ref)
			if err == nil {
				t.Fatalf("read %d bytes of a tampered blob without an error", len(got))
			}
			if tt.name != "object from another store under the same key id" && !errors.Is(err, blob.ErrIntegrity) {
				t.Errorf("error = %v, want ErrIntegrity", err)
			}
		})
	}
}

func TestEncryptedWrongKey(t *testing.T) {
	// given a blob written under key id k1
	e, inner := encrypted(t, keyring(t, "k1="+newKey(t)), 0)
	ref, err := e.Put(t.Context(), "raw/m", strings.NewReader("secret"))
	if err != nil {
		t.Fatal(err)
	}
	// when a store whose k1 is other key material reads it
	wrong := blob.NewEncrypted(inner, keyring(t, "k1="+newKey(t)))
	got, err := readAll(t, wrong, ref)
	// then nothing is returned
	if err == nil || len(got) != 0 {
		t.Fatalf("read %q, %v with the wrong key", got, err)
	}
}

func TestEncryptedKeyRotation(t *testing.T) {
	k1, k2 := "k1="+newKey(t), "k2="+newKey(t)
	// given a blob written while k1 was the primary key
	before, inner := encrypted(t, keyring(t, k1), 0)
	oldRef, err := before.Put(t.Context(), "raw/old", strings.NewReader("old"))
	if err != nil {
		t.Fatal(err)
	}

	// when k2 becomes primary and k1 stays for reading
	rotated := blob.NewEncrypted(inner, keyring(t, k2, k1))
	newRef, err := rotated.Put(t.Context(), "raw/new", strings.NewReader("new"))
	if err != nil {
		t.Fatal(err)
	}

	// then new blobs name k2, and both old and new blobs read back
	if !strings.HasSuffix(oldRef, "?kid=k1") || !strings.HasSuffix(newRef, "?kid=k2") {
		t.Errorf("refs %q, %q; want kid=k1 and kid=k2", oldRef, newRef)
	}
	for ref, want := range map[string]string{oldRef: "old", newRef: "new"} {
		if got, err := readAll(t, rotated, ref); err != nil || string(got) != want {
			t.Errorf("Get(%s) = %q, %v; want %q", ref, got, err, want)
		}
	}

	// and once k1 is retired, its blobs fail with ErrUnknownKey while k2's still read
	retired := blob.NewEncrypted(inner, keyring(t, k2))
	if _, err := readAll(t, retired, oldRef); !errors.Is(err, blob.ErrUnknownKey) {
		t.Errorf("Get of a k1 blob without k1 = %v, want ErrUnknownKey", err)
	}
	if got, err := readAll(t, retired, newRef); err != nil || string(got) != "new" {
		t.Errorf("Get of a k2 blob = %q, %v", got, err)
	}
}

func TestEncryptedRefs(t *testing.T) {
	e, inner := encrypted(t, keyring(t, "k1="+newKey(t)), 0)
	ref, err := e.Put(t.Context(), "raw/m", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	plainRef, err := inner.Put(t.Context(), "raw/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	bare, _, _ := strings.Cut(ref, "?")
	for _, bad := range []string{
		bare, plainRef, bare + "?kid=", bare + "?kid=k1&kid=k1", bare + "?kid=k1&x=1", bare + "?kid=k%2F1",
		bare + "?kid=k1#frag", bare + "?x=k1",
	} {
		if _, err := e.Get(t.Context(), bad); !errors.Is(err, blob.ErrInvalidRef) {
			t.Errorf("Get(%q) = %v, want ErrInvalidRef", bad, err)
		}
		if err := e.Delete(t.Context(), bad); !errors.Is(err, blob.ErrInvalidRef) {
			t.Errorf("Delete(%q) = %v, want ErrInvalidRef", bad, err)
		}
	}
	// The header, not the ref, says which key decrypts: a ref naming another known key id
	// still reads (a later Put of the same key may have re-encrypted the object).
	if got, err := readAll(t, e, bare+"?kid=k0"); err != nil || string(got) != "x" {
		t.Errorf("Get with another kid = %q, %v", got, err)
	}
}

func TestOpenKeyring(t *testing.T) {
	secretKey := newKey(t)
	for _, tt := range []struct {
		name  string
		specs []string
		want  string // substring of the error; "" for success
	}{
		{name: "one key", specs: []string{"k1=" + secretKey}},
		{name: "rotation", specs: []string{"2026-11=" + newKey(t), " 2026-05=" + secretKey + " "}},
		{name: "none", want: "at least one key"},
		{name: "no id", specs: []string{secretKey}, want: "the id must be"},
		{name: "no url", specs: []string{"k1"}, want: "not id=url"},
		{name: "bad id", specs: []string{"k/1=" + secretKey}, want: "the id must be"},
		{name: "no id at all", specs: []string{"=" + secretKey}, want: "the id must be"},
		{name: "twice", specs: []string{"k1=" + secretKey, "k1=" + newKey(t)}, want: "given twice"},
		{name: "scheme", specs: []string{"k1=gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k"}, want: `scheme "gcpkms"`},
		{name: "random local key", specs: []string{"k1=base64key://"}, want: "needs the key"},
		{name: "short local key", specs: []string{"k1=base64key://c2hvcnQ="}, want: "32 bytes"},
		{name: "local key with query", specs: []string{"k1=" + secretKey + "?x=1"}, want: "32 bytes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			k, err := blob.OpenKeyring(t.Context(), tt.specs)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if want := strings.TrimSpace(strings.Split(tt.specs[0], "=")[0]); k.Primary() != want {
					t.Errorf("primary = %q, want %q", k.Primary(), want)
				}
				_ = k.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("OpenKeyring = %v, want an error containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), strings.TrimPrefix(secretKey, "base64key://")) {
				t.Errorf("error %q leaks key material", err)
			}
		})
	}
}

func TestConfig(t *testing.T) {
	dir := t.TempDir()
	key := newKey(t)
	for _, tt := range []struct {
		name    string
		cfg     blob.Config
		want    string // error substring; "" for success
		wantKid string
	}{
		{name: "disabled"},
		{name: "plain", cfg: blob.Config{URL: "file://" + dir + "/plain"}},
		{name: "encrypted", cfg: blob.Config{URL: "file://" + dir + "/enc", Keys: []string{"k9=" + key}}, wantKid: "k9"},
		{name: "keys without url", cfg: blob.Config{Keys: []string{"k9=" + key}}, want: "no url"},
		{name: "bad key", cfg: blob.Config{URL: "file://" + dir, Keys: []string{"k9"}}, want: "keys: key 1 is not id=url"},
		{name: "no scheme", cfg: blob.Config{URL: dir}, want: "url:"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("Validate = %v, want %q", err, tt.want)
				}
				if strings.Contains(err.Error(), strings.TrimPrefix(key, "base64key://")) {
					t.Errorf("error %q leaks key material", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			s, err := tt.cfg.Open(t.Context())
			if err != nil || (s == nil) != (tt.cfg.URL == "") {
				t.Fatalf("Open = %v, %v", s, err)
			}
			if s == nil {
				return
			}
			defer func() { _ = s.(io.Closer).Close() }()
			ref, err := s.Put(t.Context(), "k", strings.NewReader("v"))
			if err != nil {
				t.Fatal(err)
			}
			if _, kid, _ := strings.Cut(ref, "?kid="); kid != tt.wantKid {
				t.Errorf("ref %q, want kid %q", ref, tt.wantKid)
			}
		})
	}
}

// zeros is an endless reader that allocates nothing.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestEncryptedStreamsInBoundedMemory puts and reads back 32 MiB and checks that the process
// allocated a small fraction of that: Put and Get hold a segment, not the blob.
func TestEncryptedStreamsInBoundedMemory(t *testing.T) {
	const size = 32 << 20
	e, _ := encrypted(t, keyring(t, "k1="+newKey(t)), 0)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	ref, err := e.Put(t.Context(), "raw/big", io.LimitReader(zeros{}, size))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := e.Get(t.Context(), ref)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, rc)
	_ = rc.Close()
	runtime.ReadMemStats(&after)
	if err != nil || n != size {
		t.Fatalf("read back %d bytes, %v", n, err)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("put and get of %d MiB allocated %d KiB in all", size>>20, alloc>>10)
	if alloc > 4<<20 {
		t.Errorf("put and get of %d MiB allocated %d KiB, want under 4 MiB", size>>20, alloc>>10)
	}
}
