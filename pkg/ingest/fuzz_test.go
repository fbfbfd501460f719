package ingest_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/mailpipe/mailpipe/pkg/ingest"
)

// FuzzAccept feeds arbitrary bytes through Accept: it never panics, an empty message is the
// only input refused, and whatever is recorded carries the bytes unchanged under a non-empty
// thread key that is also the record key.
func FuzzAccept(f *testing.F) {
	f.Add(plain)
	f.Add([]byte("Message-ID: <a@b>\nIn-Reply-To: <c@d>\nReferences: <e@f> <g@h>\n\nbody"))
	f.Add([]byte("no header block at all"))
	f.Add([]byte(" folded first line\r\n\r\n"))
	f.Add([]byte("References: (comment <x@y>) <\r\n\r\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		prod := &fakeProducer{}
		in := newIngester(t, ingest.Config{}, ingest.Options{Producer: prod, ThreadIndex: newMemIndex(nil)})
		res, err := in.Accept(t.Context(), smtpEnv("a@in.example.com"), raw)
		if len(raw) == 0 {
			if !errors.Is(err, ingest.ErrInvalid) {
				t.Fatalf("empty message: error = %v, want ErrInvalid", err)
			}
			return
		}
		if len(raw) > ingest.DefaultMaxInlineBytes {
			if !errors.Is(err, ingest.ErrTooLarge) {
				t.Fatalf("%d bytes without a blob store: error = %v, want ErrTooLarge", len(raw), err)
			}
			return
		}
		if err != nil {
			t.Fatalf("Accept() error = %v", err)
		}
		recs := prod.produced()
		if len(recs) != 1 {
			t.Fatalf("produced %d records, want 1", len(recs))
		}
		got := decode(t, codec(t), recs[0])
		if res.ThreadKey == "" || strings.TrimSpace(res.ThreadKey) != res.ThreadKey || string(recs[0].Key) != res.ThreadKey || got.ThreadKey != res.ThreadKey {
			t.Errorf("thread key %q, record key %q, recorded %q", res.ThreadKey, recs[0].Key, got.ThreadKey)
		}
		if got.Raw == nil || !bytes.Equal(*got.Raw, raw) || got.Size != int64(len(raw)) {
			t.Errorf("recorded raw differs from the input")
		}
	})
}
