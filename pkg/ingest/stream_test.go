package ingest_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/mailpipe/mailpipe/pkg/blob"
	"github.com/mailpipe/mailpipe/pkg/blob/cloudblob"
	"github.com/mailpipe/mailpipe/pkg/dedupe"
	"github.com/mailpipe/mailpipe/pkg/ingest"
)

// repeat is an endless reader of one chunk over and over; it allocates nothing.
type repeat struct {
	chunk []byte
	off   int
}

func (r *repeat) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.chunk[r.off:])
		n += c
		r.off = (r.off + c) % len(r.chunk)
	}
	return n, nil
}

// bigMessage returns a reader of a size-byte message with the given header block (LF line ends
// are turned into CRLF) and a body of base64-looking lines, as a large attachment looks.
func bigMessage(headers string, size int64) io.Reader {
	h := strings.ReplaceAll(headers, "\n", "\r\n") + "\r\n"
	line := []byte(strings.Repeat("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0", 3)[:76] + "\r\n")
	return io.MultiReader(strings.NewReader(h), io.LimitReader(&repeat{chunk: line}, size-int64(len(h))))
}

func sha256Of(t testing.TB, r io.Reader) string {
	t.Helper()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// files lists the regular files under dir.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return err
	})
	return out
}

func TestAcceptStream(t *testing.T) {
	const inline, maxMsg = 1000, 20_000
	headers := "From: Ann <ann@example.org>\nSubject: Report\nDate: Mon, 23 Nov 2026 10:00:00 +0000\n"
	boom := errors.New("connection reset by peer")
	for _, tt := range []struct {
		name     string
		size     int64
		noBlobs  bool
		failAt   int64 // the reader fails after this many bytes when > 0
		maxMsg   int64 // Config.MaxMessageBytes when > 0
		wantBlob bool
		wantErr  error
	}{
		{name: "at the inline limit stays inline", size: inline},
		{name: "one byte over goes to the blob store", size: inline + 1, wantBlob: true},
		{name: "large goes to the blob store", size: 15_000, wantBlob: true},
		{name: "at the size cap is recorded", size: maxMsg, wantBlob: true},
		{name: "over the size cap is too large", size: maxMsg + 1, wantErr: ingest.ErrTooLarge},
		{name: "without a blob store over the hard max is too large", size: 3000, noBlobs: true, wantErr: ingest.ErrTooLarge},
		{name: "size cap equal to the inline limit", size: inline + 1, maxMsg: inline, wantErr: ingest.ErrTooLarge},
		{name: "reader failing before the limit", size: 15_000, failAt: 500, wantErr: boom},
		{name: "reader failing while streaming to the store", size: 15_000, failAt: 9000, wantErr: boom},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// given an ingester with a file blob store and a message read in uneven chunks
			dir := t.TempDir()
			store, err := cloudblob.NewDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			prod := &fakeProducer{}
			opts := ingest.Options{Producer: prod, ThreadIndex: newMemIndex(nil)}
			if !tt.noBlobs {
				opts.Blobs = store
			}
			capBytes := int64(maxMsg)
			if tt.maxMsg > 0 {
				capBytes = tt.maxMsg
			}
			in := newIngester(t, ingest.Config{InlineLimit: inline, MaxInlineBytes: 2000, MaxMessageBytes: capBytes}, opts)
			r := iotest.HalfReader(bigMessage(headers, tt.size))
			if tt.failAt > 0 {
				r = io.MultiReader(io.LimitReader(r, tt.failAt), iotest.ErrReader(boom))
			}

			// when it is streamed in
			res, err := in.AcceptStream(t.Context(), smtpEnv("a@in.example.com"), r)

			// then errors leave nothing behind
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("AcceptStream() = %+v, %v; want error %v", res, err, tt.wantErr)
			}
			if err != nil {
				if n := len(prod.produced()); n != 0 {
					t.Errorf("produced %d records after an error", n)
				}
				if f := files(t, dir); len(f) != 0 {
					t.Errorf("blob store holds %v after an error", f)
				}
				return
			}
			// and a recorded message carries its size, digest and bytes, inline or by ref
			got := decode(t, codec(t), prod.produced()[0])
			wantSum := sha256Of(t, bigMessage(headers, tt.size))
			if got.Size != tt.size || got.Sha256 != wantSum {
				t.Errorf("size %d sha256 %s, want %d %s", got.Size, got.Sha256, tt.size, wantSum)
			}
			var stored io.Reader
			if tt.wantBlob {
				if got.Raw != nil || got.RawBlobRef == nil {
					t.Fatalf("raw inline %v, ref %v; want only a ref", got.Raw != nil, got.RawBlobRef)
				}
				rc, err := store.Get(t.Context(), *got.RawBlobRef)
				if err != nil {
					t.Fatal(err)
				}
				defer func() { _ = rc.Close() }()
				stored = rc
			} else {
				if got.Raw == nil || got.RawBlobRef != nil {
					t.Fatalf("raw inline %v, ref %v; want it inline", got.Raw != nil, got.RawBlobRef)
				}
				stored = bytes.NewReader(*got.Raw)
			}
			if sum := sha256Of(t, stored); sum != wantSum {
				t.Errorf("stored message has sha256 %s, want %s", sum, wantSum)
			}
			// and the synthetic thread key (no Message-ID) is the one Accept derives from the
			// whole message in memory: the body digest does not depend on how it arrived
			whole, _ := io.ReadAll(bigMessage(headers, tt.size))
			ref := newIngester(t, ingest.Config{MaxInlineBytes: ingest.DefaultMaxInlineBytes}, ingest.Options{Producer: &fakeProducer{}})
			want, err := ref.Accept(t.Context(), smtpEnv("a@in.example.com"), whole)
			if err != nil {
				t.Fatal(err)
			}
			if res.ThreadKey != want.ThreadKey || !strings.HasPrefix(res.ThreadKey, "synthetic:") {
				t.Errorf("thread key %q, want %q", res.ThreadKey, want.ThreadKey)
			}
		})
	}
}

func TestAcceptStreamDuplicateDropsItsBlob(t *testing.T) {
	dir := t.TempDir()
	store, err := cloudblob.NewDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	prod := &fakeProducer{}
	in := newIngester(t, ingest.Config{InlineLimit: 1000}, ingest.Options{Producer: prod, Blobs: store, Dedupe: dedupe.NewMemory()})
	headers := "From: ann@example.org\nMessage-ID: <big@example.org>\n"
	for i := range 2 {
		res, err := in.AcceptStream(t.Context(), smtpEnv("a@in.example.com"), bigMessage(headers, 5000))
		if err != nil || res.Duplicate != (i == 1) {
			t.Fatalf("attempt %d: %+v, %v", i, res, err)
		}
	}
	if f := files(t, dir); len(f) != 1 || len(prod.produced()) != 1 {
		t.Errorf("blobs %v and %d records, want one of each", f, len(prod.produced()))
	}
}

// newKeyURL returns a base64key:// URL with a fresh random key.
func newKeyURL(t testing.TB) string {
	t.Helper()
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		t.Fatal(err)
	}
	return "base64key://" + base64.URLEncoding.EncodeToString(k[:])
}

// encryptedStore is the production blob setup: the gocloud file backend with encryption at rest.
func encryptedStore(t testing.TB) blob.Store {
	t.Helper()
	s, err := blob.Config{URL: "file://" + t.TempDir(), Keys: []string{"k1=" + newKeyURL(t)}}.Open(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.(io.Closer).Close() })
	return s
}

const fiftyMiB = 50 << 20

// acceptFiftyMiB streams one 50 MiB message into in and reports what the process allocated
// meanwhile (TotalAlloc, which a GC cannot hide) and the highest live heap seen above the level
// before the call, sampled every millisecond.
func acceptFiftyMiB(tb testing.TB, in *ingest.Ingester, msg io.Reader) (res ingest.Result, allocated, peak uint64) {
	tb.Helper()
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var high atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var m runtime.MemStats
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			runtime.ReadMemStats(&m)
			if m.HeapAlloc > high.Load() {
				high.Store(m.HeapAlloc)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	})
	res, err := in.AcceptStream(tb.Context(), smtpEnv("a@in.example.com"), msg)
	close(stop)
	wg.Wait()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if err != nil {
		tb.Fatal(err)
	}
	if h := high.Load(); h > before.HeapAlloc {
		peak = h - before.HeapAlloc
	}
	return res, after.TotalAlloc - before.TotalAlloc, peak
}

// TestAcceptStreamHoldsLittleOfA50MiBMessage is the issue's "a 50 MiB message is streamed, not
// held": through the default inline limit, the encrypted gocloud file store and the record, the
// process allocates a small fraction of the message in all (not a timing test: allocation is
// deterministic up to buffer growth).
func TestAcceptStreamHoldsLittleOfA50MiBMessage(t *testing.T) {
	prod := &fakeProducer{}
	in := newIngester(t, ingest.Config{}, ingest.Options{Producer: prod, Blobs: encryptedStore(t), ThreadIndex: newMemIndex(nil)})
	headers := "From: Ann <ann@example.org>\nMessage-ID: <fifty@example.org>\nSubject: scans\n"

	res, allocated, peak := acceptFiftyMiB(t, in, bigMessage(headers, fiftyMiB))

	t.Logf("50 MiB message: %.2f MiB allocated in all, live heap peak +%.2f MiB", float64(allocated)/(1<<20), float64(peak)/(1<<20))
	if allocated > 8<<20 {
		t.Errorf("accepting a 50 MiB message allocated %.1f MiB, want under 8 MiB", float64(allocated)/(1<<20))
	}
	got := decode(t, codec(t), prod.produced()[0])
	if got.RawBlobRef == nil || got.Size != fiftyMiB || res.ThreadKey != "fifty@example.org" {
		t.Errorf("record: ref %v, size %d, thread key %q", got.RawBlobRef, got.Size, res.ThreadKey)
	}
	if want := sha256Of(t, bigMessage(headers, fiftyMiB)); got.Sha256 != want {
		t.Errorf("sha256 %s, want %s", got.Sha256, want)
	}
}

// BenchmarkAcceptStream50MiB reports, per 50 MiB message through the encrypted file store,
// throughput, allocations and the peak live heap above the starting level (peak-heap-MiB).
//
//	go test ./ingest -run '^$' -bench AcceptStream50MiB -benchtime 5x
func BenchmarkAcceptStream50MiB(b *testing.B) {
	in, err := ingest.New(ingest.Config{Domains: []string{"in.example.com"}}, ingest.Options{
		Producer: &fakeProducer{}, Codec: codec(b), Logger: discard(), Blobs: encryptedStore(b),
	})
	if err != nil {
		b.Fatal(err)
	}
	headers := "From: Ann <ann@example.org>\nSubject: scans\n"
	b.SetBytes(fiftyMiB)
	b.ReportAllocs()
	var peak uint64
	for i := 0; b.Loop(); i++ {
		_, _, p := acceptFiftyMiB(b, in, bigMessage(headers+"Message-ID: <"+strings.Repeat("x", i%7+1)+"@b>\n", fiftyMiB))
		peak = max(peak, p)
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
}
