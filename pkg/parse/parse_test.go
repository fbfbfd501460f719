package parse_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/blob"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/failure"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/mailid"
	"github.com/mailpipe/mailpipe/pkg/mime"
	"github.com/mailpipe/mailpipe/pkg/parse"
	"github.com/mailpipe/mailpipe/pkg/serde"
	"github.com/mailpipe/mailpipe/pkg/stage"
	"github.com/mailpipe/mailpipe/pkg/thread"
)

var (
	receivedAt = time.Date(2026, 11, 23, 10, 30, 0, 0, time.UTC)
	parsedAt   = time.Date(2026, 11, 23, 10, 30, 2, 0, time.UTC)
)

// memBlobs is an in-memory blob store; getErr, when set, fails every Get.
type memBlobs struct {
	mu     sync.Mutex
	blobs  map[string][]byte
	puts   []string
	putErr error
	getErr error
}

func newMemBlobs() *memBlobs { return &memBlobs{blobs: map[string][]byte{}} }

func (s *memBlobs) Put(_ context.Context, key string, r io.Reader) (string, error) {
	if s.putErr != nil {
		return "", s.putErr
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.blobs[key] = b
	s.puts = append(s.puts, key)
	return "mem:///" + key, nil
}

func (s *memBlobs) Get(_ context.Context, ref string) (io.ReadCloser, error) {
	if s.getErr != nil {
		return nil, s.getErr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.blobs[strings.TrimPrefix(ref, "mem:///")]
	if !ok {
		return nil, fmt.Errorf("blob %s: %w", ref, fs.ErrNotExist)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

// putOnly is a blob store without the read capability.
type putOnly struct{ m *memBlobs }

func (s putOnly) Put(ctx context.Context, key string, r io.Reader) (string, error) {
	return s.m.Put(ctx, key, r)
}

func newCodec(t testing.TB) *serde.Codec {
	t.Helper()
	c, err := serde.New(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// rawEvent returns a mail.raw.v1 value carrying msg inline.
func rawEvent(msg string) *events.Raw {
	b := []byte(msg)
	sum := sha256.Sum256(b)
	return &events.Raw{
		ID:         "01JB6Y2M3Q7V0000000000000",
		ReceivedAt: receivedAt,
		Envelope: events.Envelope{
			MailFrom: "bounce+x@example.com",
			RcptTo:   []string{"support+acme@in.example.com", "Hidden@Example.ORG"},
			ClientIP: "192.0.2.7", Helo: "mx.example.com", Source: "smtp",
		},
		Tenant:    "acme",
		RouteID:   "r1",
		RouteTag:  "acme",
		ThreadKey: "root@example.com",
		Size:      int64(len(b)),
		Sha256:    hex.EncodeToString(sum[:]),
		Raw:       &b,
	}
}

func record(t testing.TB, codec *serde.Codec, v *events.Raw) *kgo.Record {
	t.Helper()
	b, err := codec.Encode(kafka.TopicRaw, v)
	if err != nil {
		t.Fatal(err)
	}
	return &kgo.Record{
		Topic:   kafka.TopicRaw,
		Key:     []byte(v.ThreadKey),
		Value:   b,
		Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte("00-0102030405060708090a0b0c0d0e0f10-0102030405060708-01")}},
	}
}

func decodeParsed(t testing.TB, codec *serde.Codec, out []*kgo.Record) *events.Parsed {
	t.Helper()
	if len(out) != 1 {
		t.Fatalf("%d outputs, want 1", len(out))
	}
	if out[0].Topic != kafka.TopicParsed {
		t.Fatalf("output topic %q", out[0].Topic)
	}
	var p events.Parsed
	if err := codec.Decode(t.Context(), kafka.TopicParsed, out[0].Value, &p); err != nil {
		t.Fatal(err)
	}
	return &p
}

const message = "From: =?utf-8?Q?J=C3=B6rg?= <Joerg@Example.COM>\r\n" +
	"To: Support <support+acme@in.example.com>\r\n" +
	"Cc: a@example.net\r\n" +
	"Subject: Pricing\r\n" +
	"Date: Mon, 23 Nov 2026 11:29:00 +0100\r\n" +
	"Message-ID: <M2@Example.COM>\r\n" +
	"In-Reply-To: <root@example.com>\r\n" +
	"References: <root@example.com>\r\n" +
	"Content-Type: multipart/mixed; boundary=b\r\n" +
	"\r\n" +
	"--b\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"\r\n" +
	"What does it cost?\r\n" +
	"--b\r\n" +
	"Content-Type: application/pdf\r\n" +
	"Content-Disposition: attachment; filename=\"a.pdf\"\r\n" +
	"\r\n" +
	"%PDF-1.4 tiny\r\n" +
	"--b\r\n" +
	"Content-Type: application/pdf\r\n" +
	"Content-Disposition: attachment; filename=\"copy.pdf\"\r\n" +
	"\r\n" +
	"%PDF-1.4 tiny\r\n" +
	"--b--\r\n"

func TestHandleParsesAndStoresAttachments(t *testing.T) {
	// given
	codec := newCodec(t)
	blobs := newMemBlobs()
	p := parse.New(codec, blobs, discard(), parse.WithClock(func() time.Time { return parsedAt }))
	in := rawEvent(message)
	rec := record(t, codec, in)

	// when
	out, err := p.Handle(t.Context(), rec)
	if err != nil {
		t.Fatal(err)
	}

	// then
	got := decodeParsed(t, codec, out)
	if string(out[0].Key) != "root@example.com" || len(out[0].Headers) != 1 || out[0].Headers[0].Key != "traceparent" {
		t.Errorf("output key %q headers %v; want the input's", out[0].Key, out[0].Headers)
	}
	if got.ID != in.ID || got.Tenant != "acme" || got.RouteID != "r1" || got.RouteTag != "acme" || got.ThreadKey != "root@example.com" ||
		!got.ReceivedAt.Equal(receivedAt) || !got.ParsedAt.Equal(parsedAt) || got.Envelope.ClientIP != "192.0.2.7" {
		t.Errorf("copied fields wrong: %+v", got)
	}
	if got.MessageID != "M2@example.com" || got.InReplyTo != "root@example.com" || len(got.References) != 1 {
		t.Errorf("ids = %q %q %q", got.MessageID, got.InReplyTo, got.References)
	}
	if want := mailid.ExternalID("M2@example.com", "joerg@example.com"); got.ExternalID != want {
		t.Errorf("external id = %s, want %s", got.ExternalID, want)
	}
	if got.From == nil || *got.From != (events.Address{Address: "joerg@example.com", Name: "Jörg", DomainASCII: "example.com"}) {
		t.Errorf("from = %+v", got.From)
	}
	if len(got.Bcc) != 1 || got.Bcc[0] != (events.Address{Address: "hidden@example.org", DomainASCII: "example.org"}) {
		t.Errorf("bcc = %+v; want the envelope recipient missing from To and Cc", got.Bcc)
	}
	if got.Subject != "Pricing" || got.Text != "What does it cost?" || got.Date == nil || !got.Date.Equal(time.Date(2026, 11, 23, 10, 29, 0, 0, time.UTC)) {
		t.Errorf("subject %q text %q date %v", got.Subject, got.Text, got.Date)
	}
	if got.StrippedText != "What does it cost?" || got.HTMLSanitized != "" {
		t.Errorf("stripped text %q sanitized HTML %q; want the text and no HTML", got.StrippedText, got.HTMLSanitized)
	}
	if got.ParseStatus != "ok" || len(got.Warnings) != 0 {
		t.Errorf("status %s warnings %+v", got.ParseStatus, got.Warnings)
	}
	if got.RawSize != in.Size || got.RawSha256 != in.Sha256 || got.RawBlobRef != nil {
		t.Errorf("raw facts %d %s %v", got.RawSize, got.RawSha256, got.RawBlobRef)
	}
	if len(got.Attachments) != 2 {
		t.Fatalf("attachments %+v", got.Attachments)
	}
	sum := sha256.Sum256([]byte("%PDF-1.4 tiny"))
	key := parse.AttachmentKeyPrefix + hex.EncodeToString(sum[:])
	for _, a := range got.Attachments {
		if a.BlobRef == nil || *a.BlobRef != "mem:///"+key || a.Sha256 != hex.EncodeToString(sum[:]) || a.SniffedType != "application/pdf" {
			t.Errorf("attachment %+v", a)
		}
	}
	if len(blobs.puts) != 1 || string(blobs.blobs[key]) != "%PDF-1.4 tiny" {
		t.Errorf("puts %v; want the two equal attachments stored once under %s", blobs.puts, key)
	}
	if len(got.Headers) != 9 || got.Headers[0].Name != "From" || got.Headers[0].Value != "Jörg <Joerg@Example.COM>" {
		t.Errorf("headers %+v", got.Headers)
	}

	// Handling the same record again gives the same record (the handler may be retried).
	again, err := p.Handle(t.Context(), rec)
	if err != nil || !bytes.Equal(again[0].Value, out[0].Value) {
		t.Errorf("second Handle differs: %v", err)
	}
}

func TestHandleStripsReplyAndSanitizesHTML(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, body                  string
		wantStripped, wantSanitized string
	}{
		{
			name: "gmail reply with HTML alternative",
			body: "Content-Type: multipart/alternative; boundary=alt\r\n\r\n" +
				"--alt\r\n" +
				"Content-Type: text/plain; charset=utf-8\r\n\r\n" +
				"Tuesday works.\r\n\r\nOn Mon, Nov 23, 2026 at 11:29 AM Jörg <joerg@example.com> wrote:\r\n> Can we meet?\r\n" +
				"--alt\r\n" +
				"Content-Type: text/html; charset=utf-8\r\n\r\n" +
				`<div onclick="steal()">Tuesday <b>works</b>.<script>alert(1)</script></div>` +
				`<a href="javascript:alert(1)">x</a><a href="https://example.com/">y</a>` + "\r\n" +
				"--alt--\r\n",
			wantStripped:  "Tuesday works.",
			wantSanitized: `<div>Tuesday <b>works</b>.</div>x<a href="https://example.com/" rel="nofollow">y</a>`,
		},
		{
			name: "outlook reply, text only",
			body: "Content-Type: text/plain; charset=utf-8\r\n\r\n" +
				"Approved.\r\n\r\nBen\r\n\r\n-----Original Message-----\r\nFrom: Jörg\r\nSent: Monday\r\nTo: Ben\r\nSubject: PO\r\n\r\nPlease approve.\r\n",
			wantStripped: "Approved.\n\nBen",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			codec := newCodec(t)
			p := parse.New(codec, nil, discard())
			msg := "From: Ben <ben@example.com>\r\nTo: joerg@example.com\r\nSubject: Re: meeting\r\n" +
				"Message-ID: <r1@example.com>\r\n" + tt.body
			got := decodeParsed(t, codec, must(p.Handle(t.Context(), record(t, codec, rawEvent(msg)))))
			if got.StrippedText != tt.wantStripped {
				t.Errorf("stripped text %q, want %q", got.StrippedText, tt.wantStripped)
			}
			if strings.TrimSpace(got.HTMLSanitized) != tt.wantSanitized {
				t.Errorf("sanitized HTML %q, want %q", got.HTMLSanitized, tt.wantSanitized)
			}
		})
	}
}

func TestHandleWithoutBlobStore(t *testing.T) {
	codec := newCodec(t)
	p := parse.New(codec, nil, discard())
	got := decodeParsed(t, codec, must(p.Handle(t.Context(), record(t, codec, rawEvent(message)))))
	for _, a := range got.Attachments {
		if a.BlobRef != nil {
			t.Errorf("attachment %+v has a blob ref without a blob store", a)
		}
	}
}

func must(out []*kgo.Record, err error) []*kgo.Record {
	if err != nil {
		panic(err)
	}
	return out
}

func TestHandleRawFromBlobStore(t *testing.T) {
	codec := newCodec(t)
	blobs := newMemBlobs()
	ref, err := blobs.Put(t.Context(), "raw/1", strings.NewReader(message))
	if err != nil {
		t.Fatal(err)
	}
	in := rawEvent(message)
	in.Raw, in.RawBlobRef = nil, &ref
	got := decodeParsed(t, codec, must(parse.New(codec, blobs, discard()).Handle(t.Context(), record(t, codec, in))))
	if got.Subject != "Pricing" || got.RawBlobRef == nil || *got.RawBlobRef != ref {
		t.Errorf("subject %q raw blob ref %v", got.Subject, got.RawBlobRef)
	}
}

func TestHandleErrors(t *testing.T) {
	codec := newCodec(t)
	missing := "mem:///raw/missing"
	for _, tt := range []struct {
		name      string
		blobs     parse.BlobStore
		opts      []parse.Option
		rec       func(t *testing.T) *kgo.Record
		wantClass failure.Class
		wantText  string
	}{
		{
			name: "undecodable value",
			rec: func(*testing.T) *kgo.Record {
				return &kgo.Record{Topic: kafka.TopicRaw, Key: []byte("k"), Value: []byte("not avro")}
			},
			wantClass: failure.Schema, wantText: "decoding raw record",
		},
		{
			name:      "no header block",
			rec:       func(t *testing.T) *kgo.Record { return record(t, codec, rawEvent("// Not an RFC-822 Document")) },
			wantClass: failure.Parse, wantText: "no readable header",
		},
		{
			name: "neither raw nor ref",
			rec: func(t *testing.T) *kgo.Record {
				in := rawEvent(message)
				in.Raw = nil
				return record(t, codec, in)
			},
			wantClass: failure.Parse, wantText: "neither the message nor a blob ref",
		},
		{
			name: "raw in blob store without a blob store",
			rec: func(t *testing.T) *kgo.Record {
				in := rawEvent(message)
				in.Raw, in.RawBlobRef = nil, &missing
				return record(t, codec, in)
			},
			wantClass: failure.Parse, wantText: "raw message in blob store but no blob store configured",
		},
		{
			name:  "blob store that cannot read",
			blobs: putOnly{newMemBlobs()},
			rec: func(t *testing.T) *kgo.Record {
				in := rawEvent(message)
				in.Raw, in.RawBlobRef = nil, &missing
				return record(t, codec, in)
			},
			wantClass: failure.Parse, wantText: "cannot read",
		},
		{
			name:  "raw blob missing",
			blobs: newMemBlobs(),
			rec: func(t *testing.T) *kgo.Record {
				in := rawEvent(message)
				in.Raw, in.RawBlobRef = nil, &missing
				return record(t, codec, in)
			},
			wantClass: failure.Parse, wantText: "reading raw message",
		},
		{
			name:  "raw blob ref of another store",
			blobs: &memBlobs{getErr: fmt.Errorf("ref s3://x: %w", blob.ErrInvalidRef)},
			rec: func(t *testing.T) *kgo.Record {
				in := rawEvent(message)
				in.Raw, in.RawBlobRef = nil, &missing
				return record(t, codec, in)
			},
			wantClass: failure.Parse, wantText: "reading raw message",
		},
		{
			name:  "raw blob that fails authentication",
			blobs: &memBlobs{getErr: fmt.Errorf("raw/1: %w", blob.ErrIntegrity)},
			rec: func(t *testing.T) *kgo.Record {
				in := rawEvent(message)
				in.Raw, in.RawBlobRef = nil, &missing
				return record(t, codec, in)
			},
			wantClass: failure.Parse, wantText: "failed authentication",
		},
		{
			name:  "raw blob under a key that is not configured",
			blobs: &memBlobs{getErr: fmt.Errorf("raw/1: %w", blob.ErrUnknownKey)},
			rec: func(t *testing.T) *kgo.Record {
				in := rawEvent(message)
				in.Raw, in.RawBlobRef = nil, &missing
				return record(t, codec, in)
			},
			wantClass: failure.Parse, wantText: "reading raw message",
		},
		{
			name:  "blob store read I/O error is retried",
			blobs: &memBlobs{getErr: errors.New("connection reset")},
			rec: func(t *testing.T) *kgo.Record {
				in := rawEvent(message)
				in.Raw, in.RawBlobRef = nil, &missing
				return record(t, codec, in)
			},
			wantClass: failure.Unknown, wantText: "connection reset",
		},
		{
			name:      "attachment store error is retried",
			blobs:     &memBlobs{putErr: errors.New("disk full")},
			rec:       func(t *testing.T) *kgo.Record { return record(t, codec, rawEvent(message)) },
			wantClass: failure.Unknown, wantText: "storing attachment",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := parse.New(codec, tt.blobs, discard(), tt.opts...)
			out, err := p.Handle(t.Context(), tt.rec(t))
			if err == nil || out != nil {
				t.Fatalf("Handle = %d outputs, %v; want an error", len(out), err)
			}
			if got := failure.Classify(err); got != tt.wantClass {
				t.Errorf("class %s (%v), want %s", got, err, tt.wantClass)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error %q lacks %q", err, tt.wantText)
			}
		})
	}
}

func TestHandleRawBlobTooLarge(t *testing.T) {
	codec := newCodec(t)
	blobs := newMemBlobs()
	ref, _ := blobs.Put(t.Context(), "raw/big", strings.NewReader(message))
	in := rawEvent(message)
	in.Raw, in.RawBlobRef = nil, &ref
	_, err := parse.New(codec, blobs, discard(), parse.WithMaxRawSize(100)).Handle(t.Context(), record(t, codec, in))
	if failure.Classify(err) != failure.Parse || !strings.Contains(err.Error(), "larger than 100 bytes") {
		t.Errorf("err = %v; want class parse, larger than 100 bytes", err)
	}
}

func TestHandleMessageWithoutMessageID(t *testing.T) {
	codec := newCodec(t)
	msg := "From: Ann <ann@example.com>\r\nSubject: hi\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\nbody\r\n"
	got := decodeParsed(t, codec, must(parse.New(codec, nil, discard()).Handle(t.Context(), record(t, codec, rawEvent(msg)))))
	if got.MessageID != "" {
		t.Errorf("message id %q, want empty", got.MessageID)
	}
	// The id ingress derives the thread key from: thread.SyntheticID over the raw headers and
	// the digest of the body bytes.
	h := mail.Header{"From": {"Ann <ann@example.com>"}, "Subject": {"hi"}, "Date": {"Mon, 23 Nov 2026 10:00:00 +0000"}}
	sum := sha256.Sum256([]byte("body\r\n"))
	synthetic := thread.SyntheticID(thread.FromMail(h, hex.EncodeToString(sum[:])))
	if want := mailid.ExternalID(synthetic, "ann@example.com"); got.ExternalID != want {
		t.Errorf("external id %s, want %s (synthetic id %s)", got.ExternalID, want, synthetic)
	}
	if !hasWarning(got, mime.WarnMessageIDMissing) {
		t.Errorf("warnings %+v lack %s", got.Warnings, mime.WarnMessageIDMissing)
	}
}

func TestHandleSenderFallsBackToEnvelope(t *testing.T) {
	codec := newCodec(t)
	msg := "Subject: no from\r\nMessage-ID: <x@y>\r\n\r\nbody\r\n"
	got := decodeParsed(t, codec, must(parse.New(codec, nil, discard()).Handle(t.Context(), record(t, codec, rawEvent(msg)))))
	if want := mailid.ExternalID("x@y", "bounce+x@example.com"); got.From != nil || got.ExternalID != want {
		t.Errorf("from %+v external id %s; want nil and %s", got.From, got.ExternalID, want)
	}
}

func hasWarning(p *events.Parsed, name string) bool {
	for _, w := range p.Warnings {
		if w.Name == name {
			return true
		}
	}
	return false
}

func TestHandleBoundsTheRecord(t *testing.T) {
	codec := newCodec(t)
	long := strings.Repeat("é", 3000) // 6000 bytes
	msg := "From: a@example.com\r\nMessage-ID: <x@y>\r\nX-Long: " + strings.Repeat("v", 500) + "\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n\r\n" + long
	p := parse.New(codec, nil, discard(), parse.WithMaxBodySize(1001), parse.WithMaxHeaderValue(100))
	got := decodeParsed(t, codec, must(p.Handle(t.Context(), record(t, codec, rawEvent(msg)))))
	if len(got.Text) != 1000 || got.Text != strings.Repeat("é", 500) {
		t.Errorf("text of %d bytes; want 1000 (cut at a character boundary)", len(got.Text))
	}
	if got.ParseStatus != "partial" || !hasWarning(got, parse.WarnBodyTruncated) || !hasWarning(got, parse.WarnHeaderTruncated) {
		t.Errorf("status %s warnings %+v", got.ParseStatus, got.Warnings)
	}
	for _, h := range got.Headers {
		if len(h.Value) > 100 {
			t.Errorf("header %s of %d bytes", h.Name, len(h.Value))
		}
	}
}

func TestHandleFillsMissingRawFacts(t *testing.T) {
	codec := newCodec(t)
	in := rawEvent(message)
	in.Size, in.Sha256, in.ThreadKey = 0, "", ""
	rec := record(t, codec, in)
	rec.Key = []byte("root@example.com")
	got := decodeParsed(t, codec, must(parse.New(codec, nil, discard()).Handle(t.Context(), rec)))
	sum := sha256.Sum256([]byte(message))
	if got.RawSize != int64(len(message)) || got.RawSha256 != hex.EncodeToString(sum[:]) || got.ThreadKey != "root@example.com" {
		t.Errorf("raw size %d sha %s thread key %q", got.RawSize, got.RawSha256, got.ThreadKey)
	}
	in = rawEvent(message)
	in.Sha256 = strings.Repeat("0", 64)
	got = decodeParsed(t, codec, must(parse.New(codec, nil, discard()).Handle(t.Context(), record(t, codec, in))))
	if !hasWarning(got, parse.WarnRawDigest) {
		t.Errorf("warnings %+v lack %s", got.Warnings, parse.WarnRawDigest)
	}
}

func TestNewReplacesInvalidOptions(t *testing.T) {
	codec := newCodec(t)
	var logs bytes.Buffer
	p := parse.New(codec, nil, slog.New(slog.NewTextHandler(&logs, nil)),
		parse.WithMaxBodySize(-1), parse.WithLimits(mime.Limits{MaxParts: -3}))
	if _, err := p.Handle(t.Context(), record(t, codec, rawEvent(message))); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "max body size must be positive") || !strings.Contains(logs.String(), "invalid MIME limits") {
		t.Errorf("logs %q lack the replaced options", logs.String())
	}
}

// Handle has the pinned stage.Handler shape.
var _ stage.Handler = (*parse.Parser)(nil).Handle

// A bounce carries its report as text and the returned message as a nested message, so the
// classifier and subscribers need not fetch blobs to read them.
func TestHandleReportAndNestedMessage(t *testing.T) {
	codec := newCodec(t)
	raw := "From: MAILER-DAEMON@mx.example.net\r\nTo: me@example.com\r\nSubject: Undelivered Mail\r\n" +
		"Date: Tue, 3 Mar 2026 10:00:00 +0000\r\nMessage-ID: <bounce1@mx.example.net>\r\n" +
		"Content-Type: multipart/report; report-type=delivery-status; boundary=r\r\n\r\n" +
		"--r\r\nContent-Type: text/plain\r\n\r\nI could not deliver your mail.\r\n" +
		"--r\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n" +
		"Final-Recipient: rfc822; gone@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n" +
		"--r\r\nContent-Type: message/rfc822\r\n\r\nFrom: me@example.com\r\nTo: gone@example.org\r\n" +
		"Subject: hello there\r\nMessage-ID: <orig1@example.com>\r\n\r\nthe original text\r\n--r--\r\n"
	got := decodeParsed(t, codec, must(parse.New(codec, nil, discard()).Handle(t.Context(), record(t, codec, rawEvent(raw)))))
	var report, nested *events.Attachment
	for i, a := range got.Attachments {
		switch a.ContentType {
		case "message/delivery-status":
			report = &got.Attachments[i]
		case "message/rfc822":
			nested = &got.Attachments[i]
		}
	}
	if report == nil || report.Text == nil || !strings.Contains(*report.Text, "Status: 5.1.1") || report.Message != nil {
		t.Fatalf("delivery-status attachment = %+v; want its text", report)
	}
	if nested == nil || nested.Message == nil || nested.Text != nil {
		t.Fatalf("rfc822 attachment = %+v; want a nested message", nested)
	}
	n := nested.Message
	if n.Subject != "hello there" || n.MessageID != "orig1@example.com" || n.From == nil || n.From.Address != "me@example.com" ||
		len(n.To) != 1 || strings.TrimSpace(n.Text) != "the original text" || n.ParseStatus != "ok" {
		t.Fatalf("nested message = %+v", n)
	}
}
