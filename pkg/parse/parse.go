// Package parse is the parser stage handler: it turns an events.Raw record from mail.raw.v1 into
// an events.Parsed record on mail.parsed.v1, with package mime doing the MIME work.
//
// For each record [Parser.Handle]
//
//  1. decodes the events.Raw value (an undecodable value fails with class schema);
//  2. takes the raw message from the record, or from the blob store when ingress put it there
//     (claim check; the store must then implement [BlobGetter]);
//  3. parses it with package mime, within the MIME-bomb limits; a message without a readable
//     header block fails with class parse, any other problem becomes a warning on the record;
//  4. stores every attachment in the blob store under "att/<sha256>" (content-addressed, so a
//     redelivered record or a second message with the same file writes the same blob);
//  5. writes one mail.parsed.v1 record with the input's key (the thread key) and headers (the
//     trace context).
//
// Handle is safe for concurrent use and may be called again for the same record (retries,
// redelivery after a rebalance): it has no effect besides idempotent blob writes.
package parse

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
	"net/netip"
	"slices"
	"time"

	"github.com/microcosm-cc/bluemonday"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"

	"github.com/mailpipe/mailpipe/pkg/blob"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/failure"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/mailauth"
	"github.com/mailpipe/mailpipe/pkg/mime"
	"github.com/mailpipe/mailpipe/pkg/serde"
	"github.com/mailpipe/mailpipe/pkg/spool"
	"github.com/mailpipe/mailpipe/pkg/thread"
)

// BlobStore stores attachment bytes. blob.Store implements it. Put must be idempotent for equal
// keys and bytes and safe for concurrent use.
type BlobStore interface {
	Put(ctx context.Context, key string, r io.Reader) (ref string, err error)
}

// BlobGetter is the optional read capability of a BlobStore, found by type assertion: it is
// needed only for raw messages ingress stored in the blob store (events.Raw.RawBlobRef).
// blob.Store implements it. A missing blob must be reported with an error wrapping
// fs.ErrNotExist (blob.ErrNotFound), a ref the store does not own with blob.ErrInvalidRef; both
// fail the record with class parse, any other error is retried.
type BlobGetter interface {
	Get(ctx context.Context, ref string) (io.ReadCloser, error)
}

// AttachmentKeyPrefix starts the blob key of every attachment: "att/<hex sha256>".
const AttachmentKeyPrefix = "att/"

// Defaults of the options.
const (
	DefaultMaxRawSize     = 64 << 20
	DefaultMaxBodySize    = 256 << 10
	DefaultMaxHeaderValue = 16 << 10
)

// Option configures a [Parser].
type Option interface{ apply(*options) }

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

type options struct {
	rawBlobs       BlobGetter
	spoolThreshold int64
	spoolDir       string
	auth           *mailauth.Verifier
	now            func() time.Time
	limits         mime.Limits
	maxRawSize     int64
	maxBodySize    int
	maxHeaderValue int
	meters         metric.MeterProvider
}

// MetricRecords counts parsed records by parse status (attribute status: ok, partial or
// failed); messages without a readable header are dead letters of class parse instead. A batch
// the stage aborts and handles again is counted again: it is a rate, not a ledger.
const MetricRecords = "mailpipe.parse.records"

// WithMeterProvider sets where the parser's metrics go (default: none).
func WithMeterProvider(mp metric.MeterProvider) Option {
	return optionFunc(func(o *options) { o.meters = mp })
}

func defaultOptions() options {
	return options{
		now:            time.Now,
		limits:         mime.DefaultLimits(),
		maxRawSize:     DefaultMaxRawSize,
		maxBodySize:    DefaultMaxBodySize,
		maxHeaderValue: DefaultMaxHeaderValue,
	}
}

// WithAuth verifies SPF, DKIM and DMARC of every message with v and fills the record's
// authentication section. Without it the section is left empty ("not checked"). v's resolver
// does DNS lookups on the record's path, bounded by the stage's per-attempt timeout.
func WithAuth(v *mailauth.Verifier) Option { return optionFunc(func(o *options) { o.auth = v }) }

// WithRawBlobs reads the raw messages that ingress put in a blob store (events.Raw.RawBlobRef)
// from g instead of from the attachment store given to [New], for deployments (and `mailpipe
// parse`) that keep the two apart.
func WithRawBlobs(g BlobGetter) Option { return optionFunc(func(o *options) { o.rawBlobs = g }) }

// WithSpool sets how raw messages read from the blob store are held: attachment bodies larger
// than threshold bytes (default spool.DefaultThreshold, 1 MiB) go to temporary files in dir
// (default os.TempDir()) instead of memory, so a message's size does not bound the parser's.
func WithSpool(threshold int64, dir string) Option {
	return optionFunc(func(o *options) { o.spoolThreshold, o.spoolDir = threshold, dir })
}

// WithClock sets the clock parsed_at is taken from (default time.Now), for tests.
func WithClock(now func() time.Time) Option { return optionFunc(func(o *options) { o.now = now }) }

// WithLimits sets the MIME-bomb limits (default mime.DefaultLimits); zero fields keep their
// defaults. Limits that mime.Limits.Validate refuses are replaced by the defaults (and logged)
// by [New].
func WithLimits(l mime.Limits) Option { return optionFunc(func(o *options) { o.limits = l }) }

// WithMaxRawSize bounds the raw message read from the blob store, in bytes (default 64 MiB); a
// larger one fails with class parse. Inline raw messages are bounded by the record size already.
func WithMaxRawSize(n int64) Option { return optionFunc(func(o *options) { o.maxRawSize = n }) }

// WithMaxBodySize bounds the text and the HTML body on the record, in bytes each (default 256
// KiB). Longer bodies are cut at a character boundary and the record gets a severe
// body_truncated warning: mail.parsed.v1 records must stay below the broker's message size
// limit (1 MiB by default). The full message stays available through raw_blob_ref or
// mail.raw.v1.
func WithMaxBodySize(n int) Option { return optionFunc(func(o *options) { o.maxBodySize = n }) }

// WithMaxHeaderValue bounds each header value on the record, in bytes (default 16 KiB); longer
// values are cut with a header_truncated warning. Addresses are read from the full values.
func WithMaxHeaderValue(n int) Option { return optionFunc(func(o *options) { o.maxHeaderValue = n }) }

// Parser is the parser stage handler. Build it with [New]; it is safe for concurrent use.
type Parser struct {
	codec  *serde.Codec
	blobs  BlobStore
	getter BlobGetter
	mime   *mime.Parser
	// policy sanitizes the HTML body; built once, since building it compiles many patterns, and
	// safe for concurrent use.
	policy  *bluemonday.Policy
	opts    options
	log     *slog.Logger
	records metric.Int64Counter
}

// New returns a parser. codec and log are required. blobs may be nil: attachments are then not
// stored (blob_ref is null) and raw messages held in the blob store cannot be read. Option
// values that cannot work (a negative limit or size) are replaced by their defaults and logged
// at error level, since the stage must still run; Validate-style checks belong to the service
// config that feeds the options.
func New(codec *serde.Codec, blobs BlobStore, log *slog.Logger, opts ...Option) *Parser {
	o := defaultOptions()
	for _, opt := range opts {
		opt.apply(&o)
	}
	if o.now == nil {
		o.now = time.Now
	}
	d := defaultOptions()
	if o.maxRawSize <= 0 {
		log.Error("parser: max raw size must be positive; using the default", slog.Int64("value", o.maxRawSize))
		o.maxRawSize = d.maxRawSize
	}
	if o.maxBodySize <= 0 {
		log.Error("parser: max body size must be positive; using the default", slog.Int("value", o.maxBodySize))
		o.maxBodySize = d.maxBodySize
	}
	if o.maxHeaderValue <= 0 {
		log.Error("parser: max header value must be positive; using the default", slog.Int("value", o.maxHeaderValue))
		o.maxHeaderValue = d.maxHeaderValue
	}
	mp, err := mime.NewParser(mime.WithLimits(o.limits))
	if err != nil {
		log.Error("parser: invalid MIME limits; using the defaults", slog.Any("error", err))
		mp, _ = mime.NewParser()
		o.limits = mp.Limits()
	}
	p := &Parser{codec: codec, blobs: blobs, mime: mp, policy: bluemonday.UGCPolicy(), opts: o, log: log}
	if o.meters == nil {
		o.meters = metricnoop.NewMeterProvider()
	}
	if p.records, err = o.meters.Meter("github.com/mailpipe/mailpipe/pkg/parse").Int64Counter(MetricRecords,
		metric.WithDescription("Parsed records by parse status."), metric.WithUnit("{record}")); err != nil {
		log.Error("parser: metrics unavailable", slog.Any("error", err))
		p.records, _ = metricnoop.NewMeterProvider().Meter("").Int64Counter(MetricRecords)
	}
	if g, ok := blobs.(BlobGetter); ok && blobs != nil {
		p.getter = g
	}
	if o.rawBlobs != nil {
		p.getter = o.rawBlobs
	}
	return p
}

// Handle is the stage.Handler of the parser service (see the package doc). Errors:
// failure.Schema for an undecodable record; failure.Parse for a record without a message, a
// message without a readable header block, a raw blob that is missing, too large or cannot be
// read for lack of a blob store; failure.Internal for an output that cannot be encoded; blob
// store I/O errors unclassified (retryable).
func (p *Parser) Handle(ctx context.Context, rec *kgo.Record) ([]*kgo.Record, error) {
	var in events.Raw
	err := p.codec.Decode(ctx, kafka.TopicRaw, rec.Value, &in)
	if err != nil {
		if ctx.Err() != nil {
			// A registry lookup cut short by the attempt deadline says nothing about the record.
			return nil, fmt.Errorf("decoding raw record: %w", errors.Join(err, ctx.Err()))
		}
		return nil, failure.Wrap(failure.Schema, fmt.Errorf("decoding raw record: %w", err))
	}
	var out *events.Parsed
	if in.Raw != nil && (len(*in.Raw) > 0 || in.RawBlobRef == nil) {
		out, err = p.Parse(ctx, &in, rec.Key, *in.Raw)
	} else {
		out, err = p.parseStored(ctx, &in, rec.Key)
	}
	if err != nil {
		return nil, err
	}
	v, err := p.codec.Encode(kafka.TopicParsed, out)
	if err != nil {
		return nil, failure.Wrap(failure.Internal, fmt.Errorf("encoding parsed record of %s: %w", in.ID, err))
	}
	p.records.Add(ctx, 1, metric.WithAttributes(attribute.String("status", out.ParseStatus)))
	level := slog.LevelDebug
	if out.ParseStatus != string(mime.StatusOK) {
		level = slog.LevelInfo
	}
	p.log.LogAttrs(ctx, level, "parsed message",
		slog.String("message_id", in.ID), slog.String("parse_status", out.ParseStatus),
		slog.Int("warnings", len(out.Warnings)), slog.Int("attachments", len(out.Attachments)))
	return []*kgo.Record{{
		Topic:   kafka.TopicParsed,
		Key:     bytes.Clone(rec.Key),
		Value:   v,
		Headers: slices.Clone(rec.Headers),
	}}, nil
}

// Parse is the transformation at the heart of [Parser.Handle] (steps 3 and 4 of the package
// doc), without Kafka: it parses raw, the message of the mail.raw.v1 record in (whose own Raw and
// RawBlobRef fields are not read), stores the attachments when the parser has a blob store, and
// returns the mail.parsed.v1 record, authenticated when [WithAuth] is set. key is the record key,
// the thread key when in carries none. Handle, `mailpipe parse` and the parser benchmark all go
// through it. Errors: failure.Parse when raw has no readable header block; blob store I/O errors
// unclassified (retryable).
func (p *Parser) Parse(ctx context.Context, in *events.Raw, key, raw []byte) (*events.Parsed, error) {
	m, err := p.mime.Parse(raw)
	if err != nil {
		return nil, failure.Wrap(failure.Parse, fmt.Errorf("parsing message %s: %w", in.ID, err))
	}
	return p.finish(ctx, in, key, whole(raw), m)
}

// finish stores the attachments of m, builds the record and authenticates it.
func (p *Parser) finish(ctx context.Context, in *events.Raw, key []byte, src *source, m *mime.Message) (*events.Parsed, error) {
	refs, err := p.storeAttachments(ctx, in.ID, m.Attachments, src.spooled)
	if err != nil {
		return nil, err
	}
	out := p.build(in, key, src, m, refs)
	if p.opts.auth != nil {
		out.Authentication = p.authenticate(ctx, in, out, src)
	}
	return out, nil
}

// parseStored parses a raw message ingress put in the blob store (claim check) without holding
// it: the blob streams through spool.Split, which moves the large attachment bodies to
// temporary files while the message's digests are computed, and only the skeleton is parsed.
// Spooled attachments stream from their files to the blob store, and DKIM reads the blob again.
func (p *Parser) parseStored(ctx context.Context, in *events.Raw, key []byte) (*events.Parsed, error) {
	switch {
	case in.RawBlobRef == nil || *in.RawBlobRef == "":
		return nil, failure.New(failure.Parse, fmt.Sprintf("raw record %s carries neither the message nor a blob ref", in.ID))
	case p.getter == nil && p.blobs == nil:
		return nil, failure.New(failure.Parse, "raw message in blob store but no blob store configured")
	case p.getter == nil:
		return nil, failure.New(failure.Parse, "raw message in blob store but the blob store cannot read")
	}
	ref := *in.RawBlobRef
	blobErr := func(err error) error {
		err = fmt.Errorf("reading raw message %s from %s: %w", in.ID, ref, err)
		if permanentBlobError(err) {
			return failure.Wrap(failure.Parse, err)
		}
		return err // I/O: retry
	}
	rc, err := p.getter.Get(ctx, ref)
	if err != nil {
		return nil, blobErr(err)
	}
	defer func() { _ = rc.Close() }()
	sum, body := sha256.New(), thread.NewBodyHasher()
	lr := &io.LimitedReader{R: rc, N: p.opts.maxRawSize + 1}
	var n countingWriter
	res, err := spool.Split(ctx, io.TeeReader(lr, io.MultiWriter(sum, body, &n)), spool.Options{
		Threshold:      p.opts.spoolThreshold,
		TempDir:        p.opts.spoolDir,
		MaxDecodedSize: p.opts.limits.MaxDecodedSize,
		MaxParts:       p.opts.limits.MaxParts,
		MaxDepth:       p.opts.limits.MaxDepth,
		Keep:           keepInSkeleton,
	})
	if err != nil {
		return nil, blobErr(err)
	}
	defer func() { _ = res.Close() }()
	if int64(n) > p.opts.maxRawSize {
		return nil, failure.New(failure.Parse, fmt.Sprintf("raw message %s is larger than %d bytes", in.ID, p.opts.maxRawSize))
	}
	m, err := p.mime.ParseSpooled(res.Skeleton, func(v string) (mime.Spooled, bool) {
		sp, ok := res.Lookup(v)
		if !ok {
			return mime.Spooled{}, false
		}
		return mime.Spooled{Key: v, Size: sp.Size, SHA256: sp.SHA256, Head: sp.Head}, true
	})
	if err != nil {
		return nil, failure.Wrap(failure.Parse, fmt.Errorf("parsing message %s: %w", in.ID, err))
	}
	for _, w := range res.Warnings {
		m.Warnings = append(m.Warnings, mime.Warning{Name: w.Name, Detail: w.Detail, Severe: w.Severe})
		if w.Severe && m.Status == mime.StatusOK {
			m.Status = mime.StatusPartial
		}
	}
	digest := thread.SyntheticID(thread.ReadHeaders(res.Skeleton, body.Digest()))
	src := &source{
		head:      res.Skeleton,
		size:      int64(n),
		sha256:    hex.EncodeToString(sum.Sum(nil)),
		synthetic: func() string { return digest },
		open:      func() (io.ReadCloser, error) { return p.getter.Get(ctx, ref) },
		spooled: func(key string) (io.ReadCloser, error) {
			sp, ok := res.Lookup(key)
			if !ok {
				return nil, fmt.Errorf("spooled part %q not found", key)
			}
			return sp.Open()
		},
	}
	return p.finish(ctx, in, key, src, m)
}

// keepInSkeleton keeps text bodies in the skeleton however large: the record's text is read
// from them. Attachments of every other type may be spooled.
func keepInSkeleton(mediaType string) bool {
	return mediaType == "" || mediaType == "text/plain" || mediaType == "text/html"
}

// source is the raw message as the parser holds it: whole, or as a skeleton whose large bodies
// were spooled (parseStored).
type source struct {
	// head is the whole message, or the skeleton; its header block is the message's.
	head []byte
	// size and sha256 describe the whole raw message.
	size   int64
	sha256 string
	// synthetic is ingress's synthetic id for the message (thread.SyntheticID).
	synthetic func() string
	// open returns the whole message again (DKIM); nil when head is the whole message.
	open func() (io.ReadCloser, error)
	// spooled opens a spooled body by its mime.Spooled key; nil when nothing was spooled.
	spooled func(key string) (io.ReadCloser, error)
}

// whole is the source of a message held in memory.
func whole(raw []byte) *source {
	return &source{head: raw, size: int64(len(raw)), sha256: digest(raw), synthetic: func() string { return syntheticID(raw) }}
}

type countingWriter int64

func (c *countingWriter) Write(b []byte) (int, error) {
	*c += countingWriter(len(b))
	return len(b), nil
}

// permanentBlobError reports blob errors that retrying cannot fix: the blob is gone, its ref is
// malformed, it fails authentication, or its key is not configured. They go to the DLQ at once
// and are replayed after the fix.
func permanentBlobError(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, blob.ErrInvalidRef) ||
		errors.Is(err, blob.ErrIntegrity) || errors.Is(err, blob.ErrUnknownKey)
}

// storeAttachments puts every attachment under its content address and returns the refs by
// sha256. Equal attachments are stored once; spooled ones stream from their spool files. With no
// blob store it returns nil.
func (p *Parser) storeAttachments(ctx context.Context, id string, atts []mime.Attachment, spooled func(string) (io.ReadCloser, error)) (map[string]string, error) {
	if p.blobs == nil || len(atts) == 0 {
		return nil, nil
	}
	refs := make(map[string]string, len(atts))
	for _, a := range atts {
		if _, done := refs[a.SHA256]; done {
			continue
		}
		var r io.Reader = bytes.NewReader(a.Content)
		if a.Spooled != nil && spooled != nil {
			rc, err := spooled(a.Spooled.Key)
			if err != nil {
				return nil, fmt.Errorf("reading spooled attachment %s of message %s: %w", a.SHA256, id, err)
			}
			defer func() { _ = rc.Close() }()
			r = rc
		}
		ref, err := p.blobs.Put(ctx, AttachmentKeyPrefix+a.SHA256, r)
		if err != nil {
			return nil, fmt.Errorf("storing attachment %s of message %s: %w", a.SHA256, id, err)
		}
		refs[a.SHA256] = ref
	}
	return refs, nil
}

// digest returns the hex SHA-256 of b.
func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// authenticate runs the SPF, DKIM and DMARC checks on the bytes the parser already holds (DKIM
// hashes the body, so it needs the whole message).
func (p *Parser) authenticate(ctx context.Context, in *events.Raw, out *events.Parsed, src *source) events.Authentication {
	ip, _ := netip.ParseAddr(in.Envelope.ClientIP) // invalid: SPF is left "not checked"
	var fromDomain string
	if out.From != nil {
		fromDomain = out.From.DomainASCII
	}
	res := p.opts.auth.Verify(ctx, mailauth.Input{
		Raw: src.head, Open: src.open, ClientIP: ip, MailFrom: in.Envelope.MailFrom, Helo: in.Envelope.Helo, FromDomain: fromDomain,
	})
	if res.DKIMUnverified > 0 {
		// A MIME-bomb limit like the others: the record is incomplete, so it says partial.
		out.Warnings = append(out.Warnings, events.Warning{
			Name:   WarnLimitDKIM,
			Severe: true,
			Detail: fmt.Sprintf("%d of %d DKIM signatures not verified (limit %d per message); they read permerror", res.DKIMUnverified, len(res.DKIM), len(res.DKIM)-res.DKIMUnverified),
		})
		if out.ParseStatus == string(mime.StatusOK) {
			out.ParseStatus = string(mime.StatusPartial)
		}
	}
	return res.Authentication()
}
