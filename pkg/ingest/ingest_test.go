package ingest_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"

	"github.com/mailpipe/mailpipe/pkg/blob/cloudblob"
	"github.com/mailpipe/mailpipe/pkg/dedupe"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/ingest"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/serde"
	"github.com/mailpipe/mailpipe/pkg/thread"
)

// fakeProducer records what it is asked to produce and fails with err when set.
type fakeProducer struct {
	mu      sync.Mutex
	err     error
	records []*kgo.Record
}

func (p *fakeProducer) ProduceSync(_ context.Context, rs ...*kgo.Record) kgo.ProduceResults {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(kgo.ProduceResults, 0, len(rs))
	for _, r := range rs {
		if p.err == nil {
			p.records = append(p.records, r)
		}
		out = append(out, kgo.ProduceResult{Record: r, Err: p.err})
	}
	return out
}

func (p *fakeProducer) produced() []*kgo.Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*kgo.Record(nil), p.records...)
}

// fakeBlobs keeps blobs in memory.
type fakeBlobs struct {
	mu    sync.Mutex
	err   error
	blobs map[string][]byte
}

func (b *fakeBlobs) Put(_ context.Context, key string, r io.Reader) (string, error) {
	if b.err != nil {
		return "", b.err
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return "", err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.blobs == nil {
		b.blobs = map[string][]byte{}
	}
	b.blobs[key] = data
	return "mem://" + key, nil
}

// failingDedupe is a retry-dedupe store whose every call fails (Redis down).
type failingDedupe struct{}

func (failingDedupe) MarkSeen(context.Context, string, time.Duration) (bool, error) {
	return false, errors.New("redis: connection refused")
}

func (failingDedupe) Forget(context.Context, string) error {
	return errors.New("redis: connection refused")
}

// fixedRouter routes by domain to the given routes.
type fixedRouter map[string]ingest.Route

func (r fixedRouter) Resolve(rcpt string) (ingest.Route, bool) {
	route, ok := r[rcpt[strings.LastIndexByte(rcpt, '@')+1:]]
	return route, ok
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// newCodec parses the embedded schemas once for the whole test binary; that is slow under -race
// and the codec is safe for concurrent use.
var newCodec = sync.OnceValues(func() (*serde.Codec, error) { return serde.New(context.Background()) })

func codec(t testing.TB) *serde.Codec {
	t.Helper()
	c, err := newCodec()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var testNow = time.Date(2026, 11, 23, 10, 30, 0, 123456789, time.UTC)

func newIngester(t *testing.T, cfg ingest.Config, opts ingest.Options) *ingest.Ingester {
	t.Helper()
	if opts.Codec == nil {
		opts.Codec = codec(t)
	}
	if opts.Logger == nil {
		opts.Logger = discard()
	}
	if opts.Now == nil {
		opts.Now = func() time.Time { return testNow }
	}
	if cfg.Domains == nil {
		cfg.Domains = []string{"in.example.com"}
	}
	in, err := ingest.New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func decode(t *testing.T, c *serde.Codec, r *kgo.Record) events.Raw {
	t.Helper()
	var got events.Raw
	if err := c.Decode(t.Context(), kafka.TopicRaw, r.Value, &got); err != nil {
		t.Fatalf("decoding record: %v", err)
	}
	return got
}

func message(headers string, body string) []byte {
	return []byte(strings.ReplaceAll(headers, "\n", "\r\n") + "\r\n" + body)
}

var plain = message(`From: Ann <ann@example.org>
To: support@in.example.com
Subject: Hello
Date: Mon, 23 Nov 2026 10:00:00 +0000
Message-ID: <Root.1@Example.ORG>
`, "hi\r\n")

func smtpEnv(rcpts ...string) events.Envelope {
	return events.Envelope{
		MailFrom: "ann@example.org", RcptTo: rcpts, ClientIP: "192.0.2.7", Helo: "mx.example.org", Source: "smtp",
		TLS: &events.TLSInfo{Version: "TLS1.3", Cipher: "TLS_AES_128_GCM_SHA256"},
	}
}

func TestAcceptRecordsWhatWasSent(t *testing.T) {
	prod := &fakeProducer{}
	c := codec(t)
	in := newIngester(t, ingest.Config{}, ingest.Options{Producer: prod, Codec: c})

	env := smtpEnv("Support@IN.example.com", "support@in.example.com", "sales@in.example.com")
	res, err := in.Accept(t.Context(), env, plain)
	if err != nil {
		t.Fatal(err)
	}

	recs := prod.produced()
	if len(recs) != 1 {
		t.Fatalf("produced %d records, want 1", len(recs))
	}
	r := recs[0]
	if r.Topic != kafka.TopicRaw {
		t.Errorf("topic = %s, want %s", r.Topic, kafka.TopicRaw)
	}
	if string(r.Key) != res.ThreadKey || res.ThreadKey != "Root.1@example.org" {
		t.Errorf("key = %q, result thread key = %q, want both Root.1@example.org", r.Key, res.ThreadKey)
	}
	got := decode(t, c, r)
	sum := sha256.Sum256(plain)
	want := events.Raw{
		ID:         res.ID,
		ReceivedAt: testNow.Truncate(time.Microsecond),
		Envelope: events.Envelope{
			MailFrom: "ann@example.org", RcptTo: []string{"support@in.example.com", "sales@in.example.com"},
			ClientIP: "192.0.2.7", Helo: "mx.example.org", Source: "smtp", TLS: env.TLS,
		},
		Tenant:    ingest.DefaultTenant,
		ThreadKey: "Root.1@example.org",
		MessageID: "Root.1@example.org",
		Size:      int64(len(plain)),
		Sha256:    hex.EncodeToString(sum[:]),
		Raw:       &plain,
	}
	if diff := diffRaw(got, want); diff != "" {
		t.Error(diff)
	}
	if len(res.ID) != ingest.IDLen || res.Duplicate {
		t.Errorf("result = %+v, want a %d-character id and no duplicate", res, ingest.IDLen)
	}
	if len(r.Headers) != 0 {
		t.Errorf("headers = %v, want none without a span in ctx", r.Headers)
	}
}

// diffRaw compares the fields that matter, with readable output.
func diffRaw(got, want events.Raw) string {
	var b strings.Builder
	cmp := func(name string, g, w any) {
		if fmt.Sprint(g) != fmt.Sprint(w) {
			fmt.Fprintf(&b, "%s = %v, want %v\n", name, g, w)
		}
	}
	cmp("id", got.ID, want.ID)
	cmp("received_at", got.ReceivedAt.UTC(), want.ReceivedAt.UTC())
	env := func(e events.Envelope) string {
		tls := e.TLS
		e.TLS = nil
		return fmt.Sprintf("%+v tls=%+v", e, tls)
	}
	cmp("envelope", env(got.Envelope), env(want.Envelope))
	cmp("tenant", got.Tenant, want.Tenant)
	cmp("route_id", got.RouteID, want.RouteID)
	cmp("thread_key", got.ThreadKey, want.ThreadKey)
	cmp("message_id", got.MessageID, want.MessageID)
	cmp("size", got.Size, want.Size)
	cmp("sha256", got.Sha256, want.Sha256)
	deref := func(p *[]byte) string {
		if p == nil {
			return "<nil>"
		}
		return string(*p)
	}
	cmp("raw", deref(got.Raw), deref(want.Raw))
	ref := func(p *string) string {
		if p == nil {
			return "<nil>"
		}
		return *p
	}
	cmp("raw_blob_ref", ref(got.RawBlobRef), ref(want.RawBlobRef))
	return b.String()
}

func TestAcceptThreadKey(t *testing.T) {
	for _, tt := range []struct {
		name    string
		raw     []byte
		index   map[string]string // thread index content before Accept
		want    string
		wantMID string
		learned bool // whether the index learns wantMID → want (roots are not written)
	}{
		{
			name: "own Message-ID starts a thread",
			raw:  plain, want: "Root.1@example.org", wantMID: "Root.1@example.org",
		},
		{
			name: "first References entry is the root",
			raw: message("Message-ID: <m3@example.org>\nIn-Reply-To: <m2@example.org>\n"+
				"References: <root@example.org>\n <m2@example.org>\n", "x"),
			want: "root@example.org", wantMID: "m3@example.org", learned: true,
		},
		{
			name:  "In-Reply-To resolved through the index",
			raw:   message("Message-ID: <m2@example.org>\nIn-Reply-To: <m1@example.org>\n", "x"),
			index: map[string]string{"m1@example.org": "root@example.org"},
			want:  "root@example.org", wantMID: "m2@example.org", learned: true,
		},
		{
			name: "malformed header line ends the header block, earlier fields count",
			raw:  message("Message-ID: <m9@example.org>\nthis line has no colon\nReferences: <ignored@example.org>\n", "x"),
			want: "m9@example.org", wantMID: "m9@example.org",
		},
		{
			name: "In-Reply-To not in the index is the parent",
			raw:  message("Message-ID: <m2@example.org>\nIn-Reply-To: <m1@example.org>\n", "x"),
			want: "m1@example.org", wantMID: "m2@example.org", learned: true,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			prod := &fakeProducer{}
			idx := newMemIndex(tt.index)
			in := newIngester(t, ingest.Config{}, ingest.Options{Producer: prod, ThreadIndex: idx})
			res, err := in.Accept(t.Context(), smtpEnv("a@in.example.com"), tt.raw)
			if err != nil {
				t.Fatal(err)
			}
			if res.ThreadKey != tt.want {
				t.Errorf("thread key = %q, want %q", res.ThreadKey, tt.want)
			}
			got := decode(t, codec(t), prod.produced()[0])
			if got.MessageID != tt.wantMID {
				t.Errorf("message id = %q, want %q", got.MessageID, tt.wantMID)
			}
			// The index learns an accepted reply, so a reply to it finds the thread.
			if k, ok := idx.get(tt.wantMID); ok != tt.learned || (ok && k != tt.want) {
				t.Errorf("index[%s] = %q, %v; want learned=%v with %q", tt.wantMID, k, ok, tt.learned, tt.want)
			}
		})
	}
}

func TestAcceptSyntheticThreadKeyIsDeterministic(t *testing.T) {
	raw := message("From: ann@example.org\nSubject: no id\nDate: Mon, 23 Nov 2026 10:00:00 +0000\n", "body\r\n")
	var keys []string
	for range 2 {
		prod := &fakeProducer{}
		in := newIngester(t, ingest.Config{}, ingest.Options{Producer: prod})
		res, err := in.Accept(t.Context(), smtpEnv("a@in.example.com"), raw)
		if err != nil {
			t.Fatal(err)
		}
		if got := decode(t, codec(t), prod.produced()[0]); got.MessageID != "" {
			t.Errorf("message id = %q, want empty for a message without one", got.MessageID)
		}
		keys = append(keys, res.ThreadKey)
	}
	if !strings.HasPrefix(keys[0], thread.SyntheticPrefix) || keys[0] != keys[1] {
		t.Errorf("synthetic thread keys %q and %q, want equal and synthetic", keys[0], keys[1])
	}
}

func TestAcceptClaimCheck(t *testing.T) {
	big := message("Message-ID: <big@example.org>\n", strings.Repeat("x", 2000))
	for _, tt := range []struct {
		name     string
		cfg      ingest.Config
		blobs    *fakeBlobs
		wantBlob bool
		wantErr  error
	}{
		{name: "above the limit goes to the blob store", cfg: ingest.Config{InlineLimit: 1000}, blobs: &fakeBlobs{}, wantBlob: true},
		{name: "at most the limit stays inline", cfg: ingest.Config{InlineLimit: 4096}, blobs: &fakeBlobs{}},
		{name: "no blob store carries it inline up to the hard max", cfg: ingest.Config{InlineLimit: 1000, MaxInlineBytes: 4096}},
		{name: "no blob store above the hard max is too large", cfg: ingest.Config{InlineLimit: 1000, MaxInlineBytes: 1500}, wantErr: ingest.ErrTooLarge},
		{name: "blob store failure is temporary", cfg: ingest.Config{InlineLimit: 1000}, blobs: &fakeBlobs{err: errors.New("s3: 503")}, wantErr: errTemporary},
	} {
		t.Run(tt.name, func(t *testing.T) {
			prod := &fakeProducer{}
			opts := ingest.Options{Producer: prod}
			if tt.blobs != nil {
				opts.Blobs = tt.blobs
			}
			in := newIngester(t, tt.cfg, opts)
			res, err := in.Accept(t.Context(), smtpEnv("a@in.example.com"), big)
			if !matchErr(err, tt.wantErr) {
				t.Fatalf("Accept() error = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if n := len(prod.produced()); n != 0 {
					t.Errorf("produced %d records after an error, want 0", n)
				}
				return
			}
			got := decode(t, codec(t), prod.produced()[0])
			if tt.wantBlob {
				key := "raw/" + res.ID
				if got.Raw != nil || got.RawBlobRef == nil || *got.RawBlobRef != "mem://"+key {
					t.Errorf("raw = %v, raw_blob_ref = %v; want only raw_blob_ref mem://%s", got.Raw != nil, got.RawBlobRef, key)
				}
				if !bytes.Equal(tt.blobs.blobs[key], big) {
					t.Errorf("blob %s does not hold the message", key)
				}
			} else if got.RawBlobRef != nil || got.Raw == nil || !bytes.Equal(*got.Raw, big) {
				t.Errorf("raw_blob_ref = %v; want the message inline", got.RawBlobRef)
			}
			if got.Size != int64(len(big)) {
				t.Errorf("size = %d, want %d", got.Size, len(big))
			}
		})
	}
}

// errTemporary stands for "any error that is none of the permanent sentinels".
var errTemporary = errors.New("temporary")

func matchErr(err, want error) bool {
	switch {
	case want == nil:
		return err == nil
	case errors.Is(want, errTemporary):
		return err != nil && !errors.Is(err, ingest.ErrInvalid) && !errors.Is(err, ingest.ErrNoRoute) && !errors.Is(err, ingest.ErrTooLarge)
	default:
		return errors.Is(err, want)
	}
}

func TestAcceptRejects(t *testing.T) {
	// A reply, so that a recorded message would teach the thread index an entry.
	reply := message("Message-ID: <m2@example.org>\nIn-Reply-To: <m1@example.org>\n", "x")
	router := fixedRouter{
		"a.example.com": {ID: "r-a", Tenant: "acme"},
		"b.example.com": {ID: "r-b", Tenant: "beta"},
	}
	for _, tt := range []struct {
		name    string
		env     events.Envelope
		raw     []byte
		prodErr error
		want    error
	}{
		{name: "unknown domain", env: smtpEnv("x@elsewhere.example"), raw: reply, want: ingest.ErrNoRoute},
		{name: "one of several unknown", env: smtpEnv("x@a.example.com", "y@elsewhere.example"), raw: reply, want: ingest.ErrNoRoute},
		{name: "no recipients", env: smtpEnv(), raw: reply, want: ingest.ErrInvalid},
		{name: "blank recipients", env: smtpEnv(" ", "<>"), raw: reply, want: ingest.ErrInvalid},
		{name: "empty message", env: smtpEnv("x@a.example.com"), raw: nil, want: ingest.ErrInvalid},
		{name: "recipients of two routes", env: smtpEnv("x@a.example.com", "y@b.example.com"), raw: reply, want: ingest.ErrInvalid},
		{name: "produce failure", env: smtpEnv("x@a.example.com"), raw: reply, prodErr: errors.New("NOT_ENOUGH_REPLICAS"), want: errTemporary},
	} {
		t.Run(tt.name, func(t *testing.T) {
			prod := &fakeProducer{err: tt.prodErr}
			idx := newMemIndex(nil)
			in := newIngester(t, ingest.Config{}, ingest.Options{Producer: prod, Router: router, ThreadIndex: idx})
			res, err := in.Accept(t.Context(), tt.env, tt.raw)
			if !matchErr(err, tt.want) {
				t.Fatalf("Accept() = %+v, %v; want error %v", res, err, tt.want)
			}
			if n := len(prod.produced()); n != 0 {
				t.Errorf("produced %d records, want 0", n)
			}
			if idx.len() != 0 {
				t.Errorf("thread index learned %d entries from an unrecorded message", idx.len())
			}
		})
	}
}

func TestAcceptRoute(t *testing.T) {
	prod := &fakeProducer{}
	in := newIngester(t, ingest.Config{}, ingest.Options{Producer: prod, Router: fixedRouter{"a.example.com": {ID: "r-a", Tenant: "acme", Tag: "acme"}}})
	if _, err := in.Accept(t.Context(), smtpEnv("x@a.example.com", "y@A.example.com"), plain); err != nil {
		t.Fatal(err)
	}
	got := decode(t, codec(t), prod.produced()[0])
	if got.Tenant != "acme" || got.RouteID != "r-a" || got.RouteTag != "acme" {
		t.Errorf("tenant, route, tag = %q, %q, %q; want acme, r-a, acme", got.Tenant, got.RouteID, got.RouteTag)
	}
}

// smtpCopy is msg as smtpd hands it over: behind a Received header with the time of the attempt,
// so two attempts of one message never have the same bytes.
func smtpCopy(msg []byte, at time.Time) []byte {
	return append([]byte("Received: from mx.example.org ([192.0.2.7])\r\n\tby mx.test (mailpipe) with ESMTP;\r\n\t"+
		at.Format(time.RFC1123Z)+"\r\n"), msg...)
}

func TestAcceptRetryDedupe(t *testing.T) {
	noID := message("From: Ann <ann@example.org>\nSubject: no id\nDate: Mon, 23 Nov 2026 10:00:00 +0000\n", "hi\r\n")
	for _, tt := range []struct {
		name        string
		first, next []byte
		firstEnv    events.Envelope
		nextEnv     events.Envelope
		dup         bool
	}{
		{
			name: "same bytes, recipients reordered", first: plain, next: plain, dup: true,
			firstEnv: smtpEnv("a@in.example.com", "b@in.example.com"), nextEnv: smtpEnv("b@in.example.com", "A@in.example.com"),
		},
		{
			name: "SMTP retry: same Message-ID and sender behind a new Received header", dup: true,
			first: smtpCopy(plain, testNow), next: smtpCopy(plain, testNow.Add(3*time.Minute)),
			firstEnv: smtpEnv("a@in.example.com"), nextEnv: smtpEnv("a@in.example.com"),
		},
		{
			name: "SMTP retry without a Message-ID: same sender, date, subject and body", dup: true,
			first: smtpCopy(noID, testNow), next: smtpCopy(noID, testNow.Add(3*time.Minute)),
			firstEnv: smtpEnv("a@in.example.com"), nextEnv: smtpEnv("a@in.example.com"),
		},
		{
			name: "same Message-ID and sender, bytes changed on the way", dup: true,
			first: plain, next: append(bytes.Clone(plain), "-- \r\nfooter added by a relay\r\n"...),
			firstEnv: smtpEnv("a@in.example.com"), nextEnv: smtpEnv("a@in.example.com"),
		},
		{
			name: "other recipients (a message split over two transactions)", first: plain, next: plain,
			firstEnv: smtpEnv("a@in.example.com", "b@in.example.com"), nextEnv: smtpEnv("a@in.example.com"),
		},
		{
			name: "other Message-ID", first: plain, next: bytes.Replace(plain, []byte("Root.1@"), []byte("Root.2@"), 1),
			firstEnv: smtpEnv("a@in.example.com"), nextEnv: smtpEnv("a@in.example.com"),
		},
		{
			name: "same Message-ID from another author", first: plain, next: bytes.Replace(plain, []byte("ann@example.org"), []byte("bob@example.org"), 1),
			firstEnv: smtpEnv("a@in.example.com"), nextEnv: smtpEnv("a@in.example.com"),
		},
		{
			name: "no Message-ID, other body", first: noID, next: bytes.Replace(noID, []byte("hi"), []byte("ho"), 1),
			firstEnv: smtpEnv("a@in.example.com"), nextEnv: smtpEnv("a@in.example.com"),
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// given a message recorded once
			prod := &fakeProducer{}
			in := newIngester(t, ingest.Config{}, ingest.Options{Producer: prod, Dedupe: dedupe.NewMemory()})
			first, err := in.Accept(t.Context(), tt.firstEnv, tt.first)
			if err != nil {
				t.Fatal(err)
			}
			// when the next delivery arrives
			next, err := in.Accept(t.Context(), tt.nextEnv, tt.next)
			if err != nil {
				t.Fatal(err)
			}
			// then a retry is acknowledged as a duplicate and produced once; anything else is
			// a new record
			want := 2
			if tt.dup {
				want = 1
				if !next.Duplicate || next.ThreadKey != first.ThreadKey || next.ID != "" {
					t.Errorf("retry result = %+v, want a duplicate with thread key %s", next, first.ThreadKey)
				}
			} else if next.Duplicate || next.ID == "" {
				t.Errorf("result = %+v, want a new record", next)
			}
			if n := len(prod.produced()); n != want {
				t.Errorf("produced %d records, want %d", n, want)
			}
		})
	}
}

func TestAcceptRetryAfterFailureIsRecorded(t *testing.T) {
	// given an attempt whose produce failed
	prod := &fakeProducer{err: errors.New("broker down")}
	in := newIngester(t, ingest.Config{}, ingest.Options{Producer: prod, Dedupe: dedupe.NewMemory()})
	if _, err := in.Accept(t.Context(), smtpEnv("a@in.example.com"), plain); err == nil {
		t.Fatal("Accept() succeeded with a failing producer")
	}

	// when the client retries after the broker is back
	prod.mu.Lock()
	prod.err = nil
	prod.mu.Unlock()
	res, err := in.Accept(t.Context(), smtpEnv("a@in.example.com"), plain)
	// then the retry is recorded, not dropped as a duplicate
	if err != nil || res.Duplicate || len(prod.produced()) != 1 {
		t.Errorf("retry: Accept() = %+v, %v with %d records; want one new record", res, err, len(prod.produced()))
	}
}

func TestAcceptRetryWhileInFlight(t *testing.T) {
	// given an attempt blocked in the produce
	release := make(chan struct{})
	entered := make(chan struct{})
	prod := &blockingProducer{entered: entered, release: release}
	in := newIngester(t, ingest.Config{}, ingest.Options{Producer: prod, Dedupe: dedupe.NewMemory()})
	done := make(chan error, 1)
	go func() {
		_, err := in.Accept(t.Context(), smtpEnv("a@in.example.com"), plain)
		done <- err
	}()
	<-entered

	// when the same delivery arrives again
	_, err := in.Accept(t.Context(), smtpEnv("a@in.example.com"), plain)

	// then it gets a temporary error, not a "duplicate" the first attempt could still falsify
	if !errors.Is(err, ingest.ErrInFlight) {
		t.Errorf("concurrent retry: error = %v, want ErrInFlight", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	res, err := in.Accept(t.Context(), smtpEnv("a@in.example.com"), plain)
	if err != nil || !res.Duplicate {
		t.Errorf("retry after the first attempt: Accept() = %+v, %v; want a duplicate", res, err)
	}
}

type blockingProducer struct {
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func (p *blockingProducer) ProduceSync(_ context.Context, rs ...*kgo.Record) kgo.ProduceResults {
	p.once.Do(func() { close(p.entered) })
	<-p.release
	out := make(kgo.ProduceResults, 0, len(rs))
	for _, r := range rs {
		out = append(out, kgo.ProduceResult{Record: r})
	}
	return out
}

func TestAcceptDedupeStoreDownRecordsAnyway(t *testing.T) {
	prod := &fakeProducer{}
	in := newIngester(t, ingest.Config{}, ingest.Options{Producer: prod, Dedupe: failingDedupe{}})
	for i := range 2 {
		res, err := in.Accept(t.Context(), smtpEnv("a@in.example.com"), plain)
		if err != nil || res.Duplicate {
			t.Fatalf("attempt %d: Accept() = %+v, %v; want recorded", i, res, err)
		}
	}
	if n := len(prod.produced()); n != 2 {
		t.Errorf("produced %d records, want 2 (a store error means not known)", n)
	}
}

func TestAcceptPropagatesTraceContext(t *testing.T) {
	prod := &fakeProducer{}
	in := newIngester(t, ingest.Config{}, ingest.Options{Producer: prod})
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:     trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
		TraceFlags: trace.FlagsSampled,
	})
	ctx := trace.ContextWithSpanContext(t.Context(), sc)
	if _, err := in.Accept(ctx, smtpEnv("a@in.example.com"), plain); err != nil {
		t.Fatal(err)
	}
	var got string
	for _, h := range prod.produced()[0].Headers {
		if h.Key == "traceparent" {
			got = string(h.Value)
		}
	}
	if want := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"; got != want {
		t.Errorf("traceparent = %q, want %q", got, want)
	}
}

func TestNewValidates(t *testing.T) {
	c := codec(t)
	for _, tt := range []struct {
		name string
		cfg  ingest.Config
		opts ingest.Options
		want string
	}{
		{name: "missing dependencies", opts: ingest.Options{}, want: "producer is required"},
		{name: "missing codec", opts: ingest.Options{Producer: &fakeProducer{}, Logger: discard()}, want: "codec is required"},
		{name: "missing logger", opts: ingest.Options{Producer: &fakeProducer{}, Codec: c}, want: "logger is required"},
		{
			name: "inline limit above hard max", cfg: ingest.Config{InlineLimit: 2000, MaxInlineBytes: 1000},
			opts: ingest.Options{Producer: &fakeProducer{}, Codec: c, Logger: discard()}, want: "at least the inline limit",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ingest.New(tt.cfg, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New() error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// failingIndex is a thread index whose every call fails (Redis down).
type failingIndex struct{}

func (failingIndex) Lookup(context.Context, string) (string, bool, error) {
	return "", false, errors.New("redis: i/o timeout")
}

func (failingIndex) Remember(context.Context, string, string) error {
	return errors.New("redis: i/o timeout")
}

func TestAcceptThreadIndexDownRecordsAnyway(t *testing.T) {
	prod := &fakeProducer{}
	in := newIngester(t, ingest.Config{}, ingest.Options{Producer: prod, ThreadIndex: failingIndex{}})
	reply := message("Message-ID: <m2@example.org>\nIn-Reply-To: <m1@example.org>\n", "x")
	res, err := in.Accept(t.Context(), smtpEnv("a@in.example.com"), reply)
	if err != nil {
		t.Fatalf("Accept() error = %v, want the message recorded with a header-only key", err)
	}
	if res.ThreadKey != "m1@example.org" || len(prod.produced()) != 1 {
		t.Errorf("thread key = %q with %d records; want m1@example.org and one record", res.ThreadKey, len(prod.produced()))
	}
}

func TestAcceptClaimCheckWithFileBlobStore(t *testing.T) {
	big := message("Message-ID: <big@example.org>\n", strings.Repeat("x", 2000))
	for _, tt := range []struct {
		name      string
		prodErr   error
		wantFiles int
	}{
		{name: "recorded message keeps its blob", wantFiles: 1},
		{name: "unrecorded message leaves no blob", prodErr: errors.New("broker down"), wantFiles: 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			store, err := cloudblob.NewDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			prod := &fakeProducer{err: tt.prodErr}
			in := newIngester(t, ingest.Config{InlineLimit: 1000}, ingest.Options{Producer: prod, Blobs: store})
			res, err := in.Accept(t.Context(), smtpEnv("a@in.example.com"), big)
			if (err != nil) != (tt.prodErr != nil) {
				t.Fatalf("Accept() error = %v", err)
			}
			files, _ := filepath.Glob(filepath.Join(dir, "raw", "*"))
			if len(files) != tt.wantFiles {
				t.Fatalf("blob files = %v, want %d", files, tt.wantFiles)
			}
			if tt.wantFiles == 0 {
				return
			}
			got := decode(t, codec(t), prod.produced()[0])
			rc, err := store.Get(t.Context(), *got.RawBlobRef)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = rc.Close() }()
			stored, _ := io.ReadAll(rc)
			if !bytes.Equal(stored, big) || filepath.Base(files[0]) != res.ID {
				t.Errorf("blob %s holds %d bytes, want the message under raw/%s", files[0], len(stored), res.ID)
			}
		})
	}
}

// ctxProducer waits for its ctx like a client whose broker never acknowledges.
type ctxProducer struct{}

func (ctxProducer) ProduceSync(ctx context.Context, rs ...*kgo.Record) kgo.ProduceResults {
	<-ctx.Done()
	return kgo.ProduceResults{{Record: rs[0], Err: ctx.Err()}}
}

func TestAcceptIsBoundedByAcceptTimeout(t *testing.T) {
	in := newIngester(t, ingest.Config{AcceptTimeout: 50 * time.Millisecond}, ingest.Options{Producer: ctxProducer{}})
	start := time.Now()
	_, err := in.Accept(t.Context(), smtpEnv("a@in.example.com"), plain)
	if !errors.Is(err, context.DeadlineExceeded) || !matchErr(err, errTemporary) {
		t.Errorf("Accept() error = %v, want a temporary deadline error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Accept took %s with a 50ms accept timeout", d)
	}
}
