package spool_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"runtime"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/spool"
)

// writeMessage writes a message with a text part and a base64 attachment of n pseudo-random
// bytes (76-character CRLF lines) to w, without holding the message: it encodes 57 KiB at a
// time into reused buffers. It returns the attachment's SHA-256.
func writeMessage(w io.Writer, n int, seed uint64) (string, error) {
	head := "From: a@example.com\r\nTo: b@example.com\r\nSubject: big\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"=_boundary\"\r\n\r\n--=_boundary\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n\r\nSee the attachment.\r\n--=_boundary\r\n" +
		"Content-Type: application/octet-stream; name=\"big.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
	if _, err := io.WriteString(w, head); err != nil {
		return "", err
	}
	rng := rand.NewChaCha8([32]byte{byte(seed)})
	h := sha256.New()
	raw := make([]byte, 57*1024)
	out := make([]byte, 0, 78*1024)
	var line [76]byte
	for n > 0 {
		chunk := raw[:min(n, len(raw))]
		_, _ = rng.Read(chunk)
		h.Write(chunk)
		n -= len(chunk)
		out = out[:0]
		for len(chunk) > 0 {
			k := min(57, len(chunk))
			m := base64.StdEncoding.EncodedLen(k)
			base64.StdEncoding.Encode(line[:m], chunk[:k])
			out = append(append(out, line[:m]...), '\r', '\n')
			chunk = chunk[k:]
		}
		if _, err := w.Write(out); err != nil {
			return "", err
		}
	}
	if _, err := io.WriteString(w, "--=_boundary--\r\n"); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// TestMemoryBounded streams a message with a 25 MiB attachment (about 34 MiB of base64) through
// Split over an io.Pipe, never holding it, and checks that Split allocates less than 16 MiB in
// all: the bytes allocated bound the heap it can have used at any time. It also samples the heap
// while Split runs and logs the peak growth.
func TestMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 34 MiB")
	}
	const size = 25 << 20
	pr, pw := io.Pipe()
	sum := make(chan string, 1)
	go func() {
		s, err := writeMessage(pw, size, 1)
		_ = pw.CloseWithError(err)
		sum <- s
	}()

	// Sample the heap (live and not yet swept objects) every millisecond.
	var peak atomic.Uint64
	stop, stopped := make(chan struct{}), make(chan struct{})
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	runtime.GC()
	metrics.Read(sample)
	base := sample[0].Value.Uint64()
	go func() {
		defer close(stopped)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(sample)
			if v := sample[0].Value.Uint64(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)

	res, err := spool.Split(t.Context(), pr, spool.Options{TempDir: t.TempDir()})

	runtime.ReadMemStats(&after)
	close(stop)
	<-stopped
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, res)
	allocated := after.TotalAlloc - before.TotalAlloc
	growth := int64(peak.Load()) - int64(base)
	t.Logf("Split of a 25 MiB attachment: %.2f MiB allocated in all, heap peak %.2f MiB above the %.2f MiB before, skeleton %d bytes",
		float64(allocated)/(1<<20), float64(growth)/(1<<20), float64(base)/(1<<20), len(res.Skeleton))
	if allocated >= 16<<20 {
		t.Errorf("Split allocated %d bytes, want < 16 MiB", allocated)
	}
	if len(res.Parts) != 1 {
		t.Fatalf("%d parts spooled, want 1", len(res.Parts))
	}
	p := res.Parts[0]
	if want := <-sum; p.Size != size || p.SHA256 != want {
		t.Errorf("spooled %d bytes %s, want %d %s", p.Size, p.SHA256, size, want)
	}
	if len(res.Skeleton) > 1024 {
		t.Errorf("skeleton of %d bytes", len(res.Skeleton))
	}
}

// BenchmarkSplit measures throughput (MB/s of raw message) through Split: a base64 attachment,
// a quoted-printable HTML body, and a message with nothing to spool (the scan alone).
func BenchmarkSplit(b *testing.B) {
	var attachment bytes.Buffer
	if _, err := writeMessage(&attachment, 16<<20, 2); err != nil {
		b.Fatal(err)
	}
	qp := "Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
		string(bytes.Repeat([]byte("<p class=3D\"x\">Caf=C3=A9 lorem ipsum dolor sit amet, consectetur adipisci=\r\nng elit</p>\r\n"), 50_000))
	for _, bm := range []struct {
		name string
		msg  []byte
		opts spool.Options
	}{
		{"base64 attachment 16 MiB", attachment.Bytes(), spool.Options{}},
		{"quoted-printable html 4 MiB", []byte(qp), spool.Options{}},
		{"nothing spooled", attachment.Bytes(), spool.Options{Threshold: 1 << 40}},
	} {
		b.Run(bm.name, func(b *testing.B) {
			bm.opts.TempDir = b.TempDir()
			b.SetBytes(int64(len(bm.msg)))
			b.ReportAllocs()
			for b.Loop() {
				res, err := spool.Split(b.Context(), bytes.NewReader(bm.msg), bm.opts)
				if err != nil {
					b.Fatal(err)
				}
				if err := res.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
