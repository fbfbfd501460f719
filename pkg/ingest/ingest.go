package ingest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/mailid"
	"github.com/mailpipe/mailpipe/pkg/serde"
	"github.com/mailpipe/mailpipe/pkg/thread"
)

// Errors returned by [Ingester.AcceptStream] and [Ingester.Accept] that are the sender's fault:
// retrying the same request fails the same way, so front-ends answer them with a permanent error
// (SMTP 5xx, HTTP 4xx). Every other error is temporary (SMTP 451, HTTP 503): the message was not
// recorded and the sender should retry.
var (
	// ErrInvalid: the request cannot be recorded as given (no recipients, an empty message,
	// recipients that belong to different routes).
	ErrInvalid = errors.New("invalid message")
	// ErrNoRoute: a recipient is not an address mailpipe receives mail for.
	ErrNoRoute = errors.New("recipient has no route")
	// ErrTooLarge: the message is larger than can be recorded (Config.MaxInlineBytes without a
	// blob store, Config.MaxMessageBytes with one).
	ErrTooLarge = errors.New("message too large")
)

// ErrInFlight is returned by [Ingester.AcceptStream] and Accept (with retry dedupe configured) when another
// attempt to record the same message for the same recipients is still running, typically a
// client that gave up waiting and retried on a new connection. It is temporary: the sender
// should retry later, when the running attempt has either recorded the message (the retry is
// then answered as a duplicate) or failed (the retry records it).
var ErrInFlight = errors.New("an identical delivery is being recorded")

// Environment variable names of [Config], relative to the prefix the service gives the section
// (the ingress service reads them as MAILPIPE_INGEST_<NAME>).
const (
	EnvDomains         = "DOMAINS"
	EnvInlineLimit     = "INLINE_LIMIT"
	EnvMaxInlineBytes  = "MAX_INLINE_BYTES"
	EnvDedupeTTL       = "DEDUPE_TTL"
	EnvTopic           = "TOPIC"
	EnvAcceptTimeout   = "ACCEPT_TIMEOUT"
	EnvMaxMessageBytes = "MAX_MESSAGE_BYTES"
	EnvThreadTTL       = "THREAD_TTL"
)

// Defaults of [Config].
const (
	// DefaultInlineLimit is the largest message carried inline on mail.raw.v1 when a blob store
	// is configured: 512 KiB keeps records well below Kafka's default max.message.bytes (1 MiB).
	DefaultInlineLimit = 512 << 10
	// DefaultMaxInlineBytes is the largest message carried inline when no blob store is
	// configured: 900 KiB leaves room for the envelope and framing under the broker's default
	// max.message.bytes and franz-go's default ProducerBatchMaxBytes (1,000,012 bytes). Raise it
	// only together with both.
	DefaultMaxInlineBytes = 900 << 10
	// DefaultDedupeTTL is how long a (message, recipients) pair is remembered to drop a client's
	// retry after a lost 250/202. Retries after a lost reply come within minutes; a longer TTL
	// only costs Redis memory.
	DefaultDedupeTTL = 15 * time.Minute
	// DefaultAcceptTimeout bounds one Accept call, above the front-ends' own 30 s defaults.
	DefaultAcceptTimeout = time.Minute
	// DefaultMaxMessageBytes is the largest message recorded through the blob store: the
	// parser's default raw-size bound (parse.DefaultMaxRawSize), so nothing is accepted that
	// the next stage must refuse.
	DefaultMaxMessageBytes = 64 << 20
	// DefaultThreadTTL is how long the thread index remembers a reply's thread key
	// (redisthread.DefaultTTL): it covers the replies of a typical support or sales
	// conversation; a later reply carrying only In-Reply-To falls back to its parent's id.
	DefaultThreadTTL = 90 * 24 * time.Hour
)

// Config is the ingest configuration. Zero fields take the defaults above.
type Config struct {
	// Domains are the domains mail is accepted for while no route table is configured
	// (Options.Router nil); every recipient there belongs to tenant "default". Empty means
	// no domain, so without a Router nothing is accepted.
	Domains []string `env:"DOMAINS" usage:"domains mail is accepted for (tenant default) while routes are not configured"`
	// InlineLimit in bytes: larger messages go to the blob store and the record carries
	// raw_blob_ref (claim check). Ignored without a blob store. Default 512 KiB.
	InlineLimit int64 `env:"INLINE_LIMIT" default:"524288" usage:"bytes above which raw mail goes to the blob store"`
	// MaxInlineBytes is the hard upper bound for a message carried inline when no blob store
	// is configured; larger messages fail with ErrTooLarge. Default 900 KiB (see
	// DefaultMaxInlineBytes); must be at least InlineLimit.
	MaxInlineBytes int64 `env:"MAX_INLINE_BYTES" default:"921600" usage:"largest message carried inline without a blob store"`
	// DedupeTTL is how long a retry is recognised (only with Options.Dedupe). Default 15m.
	DedupeTTL time.Duration `env:"DEDUPE_TTL" default:"15m" usage:"how long a client retry of the same message is dropped"`
	// AcceptTimeout bounds one Accept call (Accept applies it to its ctx). It is also the
	// lifetime of a retry-dedupe in-flight key (plus a small margin), so after a crash retries
	// get ErrInFlight at most that long; bounding Accept by it guarantees no in-flight key
	// expires while its attempt still runs. Front-ends normally set a shorter deadline of their
	// own. Default 1m.
	AcceptTimeout time.Duration `env:"ACCEPT_TIMEOUT" default:"1m" usage:"upper bound of recording one message; also the retry-dedupe in-flight key lifetime"`
	// MaxMessageBytes bounds a message recorded through the blob store; larger ones fail with
	// ErrTooLarge once that many bytes were read. Front-ends enforce their own, usually lower,
	// limits first (SMTP SIZE, HTTP body limit); this one protects the blob store and the
	// parser. Default 64 MiB; must be at least InlineLimit.
	MaxMessageBytes int64 `env:"MAX_MESSAGE_BYTES" default:"67108864" usage:"largest message recorded through the blob store"`
	// ThreadTTL is how long the Redis thread index remembers a reply's thread key (the ingress
	// wiring passes it to redisthread.WithTTL). Default 90 days (2160h).
	ThreadTTL time.Duration `env:"THREAD_TTL" default:"2160h" usage:"how long the thread index remembers a reply's thread key"`
	// Topic the records are written to. Default kafka.TopicRaw. Values are always encoded
	// with the mail.raw.v1 schema; override only to isolate an environment or a test.
	Topic string `env:"TOPIC" default:"mail.raw.v1" usage:"topic accepted mail is written to"`
}

// DefaultConfig returns the defaults, with no domains.
func DefaultConfig() Config {
	return Config{
		InlineLimit:     DefaultInlineLimit,
		MaxInlineBytes:  DefaultMaxInlineBytes,
		DedupeTTL:       DefaultDedupeTTL,
		Topic:           kafka.TopicRaw,
		AcceptTimeout:   DefaultAcceptTimeout,
		MaxMessageBytes: DefaultMaxMessageBytes,
		ThreadTTL:       DefaultThreadTTL,
	}
}

// withDefaults fills zero fields from DefaultConfig.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.InlineLimit == 0 {
		c.InlineLimit = d.InlineLimit
	}
	if c.MaxInlineBytes == 0 {
		c.MaxInlineBytes = d.MaxInlineBytes
	}
	if c.DedupeTTL == 0 {
		c.DedupeTTL = d.DedupeTTL
	}
	if c.Topic == "" {
		c.Topic = d.Topic
	}
	if c.AcceptTimeout == 0 {
		c.AcceptTimeout = d.AcceptTimeout
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = d.MaxMessageBytes
	}
	if c.ThreadTTL == 0 {
		c.ThreadTTL = d.ThreadTTL
	}
	return c
}

// Validate checks the configuration after defaults are applied; the error joins every problem.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.InlineLimit < 0 {
		errs = append(errs, errors.New("inline limit must not be negative"))
	}
	if c.MaxInlineBytes < c.InlineLimit {
		errs = append(errs, fmt.Errorf("max inline bytes (%d) must be at least the inline limit (%d)", c.MaxInlineBytes, c.InlineLimit))
	}
	if c.DedupeTTL < 0 {
		errs = append(errs, errors.New("dedupe ttl must not be negative"))
	}
	if c.AcceptTimeout < 0 {
		errs = append(errs, errors.New("accept timeout must not be negative"))
	}
	if c.MaxMessageBytes < c.InlineLimit {
		errs = append(errs, fmt.Errorf("max message bytes (%d) must be at least the inline limit (%d)", c.MaxMessageBytes, c.InlineLimit))
	}
	if c.ThreadTTL < 0 {
		errs = append(errs, errors.New("thread ttl must not be negative"))
	}
	for _, d := range c.Domains {
		if d = normalizeDomain(d); d != "" && strings.ContainsAny(d, "@ \t") {
			errs = append(errs, fmt.Errorf("domain %q is not a domain name", d))
		}
	}
	return errors.Join(errs...)
}

// Producer writes records synchronously. *kgo.Client fits; build it with kafka.NewProducer so
// that acks=all and idempotence hold. ProduceSync must return only when every record is
// acknowledged or failed.
type Producer interface {
	ProduceSync(ctx context.Context, rs ...*kgo.Record) kgo.ProduceResults
}

// Options are the dependencies of an [Ingester]. Producer, Codec and Logger are required;
// the others are optional and documented with their nil behaviour.
type Options struct {
	// Producer writes mail.raw.v1. Required.
	Producer Producer
	// Codec encodes events.Raw in the Confluent wire format. Required.
	Codec *serde.Codec
	// Logger receives one line per accepted message (ids, sizes; never bodies). Required.
	Logger *slog.Logger
	// Router resolves recipients. Nil: a DomainRouter over Config.Domains.
	Router Router
	// ThreadIndex resolves In-Reply-To to a thread key and, once a reply is recorded, learns
	// its thread key (redisthread.Index). Nil: no resolution; a reply without References is
	// keyed by its parent's id, which is right when the parent was the root.
	ThreadIndex thread.Index
	// Blobs stores raw messages above Config.InlineLimit under "raw/<id>" (blob.Store fits).
	// Put must stream (not hold the reader's bytes), or a large message is held after all.
	// Nil: every message is carried inline, up to Config.MaxInlineBytes.
	Blobs BlobStore
	// Dedupe recognises a client's retry of a message already recorded within
	// Config.DedupeTTL: the same Message-ID and sender (for a message without a Message-ID, the
	// same synthetic id: sender, date, subject, body) to the same recipients. Accept then
	// returns Duplicate and produces nothing.
	// Nil: no retry dedupe (downstream stages are idempotent by external id, so a retry costs
	// work, not correctness).
	Dedupe Deduper
	// Now is the clock for ids and received_at. Nil: time.Now.
	Now func() time.Time
	// Entropy is the random source for ids. Nil: crypto/rand.
	Entropy io.Reader
	// Propagator writes the trace context of Accept's ctx into the record headers, so the
	// parser continues the message's trace. Nil: W3C TraceContext (traceparent, tracestate).
	Propagator propagation.TextMapPropagator
	// TracerProvider records the "<source> accept" span that starts each message's trace (see
	// [Ingester.AcceptStream]). Nil: no span is recorded, and the record carries the trace
	// context of Accept's ctx, if any.
	TracerProvider trace.TracerProvider
}

// Validate reports missing required dependencies.
func (o Options) Validate() error {
	var errs []error
	if o.Producer == nil {
		errs = append(errs, errors.New("producer is required"))
	}
	if o.Codec == nil {
		errs = append(errs, errors.New("codec is required"))
	}
	if o.Logger == nil {
		errs = append(errs, errors.New("logger is required"))
	}
	return errors.Join(errs...)
}

// Result is what [Ingester.Accept] recorded.
type Result struct {
	// ID is the message id (a ULID) of the record on mail.raw.v1. For a Duplicate it is empty:
	// the original's id is not remembered, only that it was recorded.
	ID string
	// ThreadKey is the record key.
	ThreadKey string
	// Duplicate is true when the message was recognised as a retry of one recorded within
	// Config.DedupeTTL and nothing new was produced.
	Duplicate bool
}

// Ingester implements the ingress use case. It is safe for concurrent use by any number of
// front-end sessions.
type Ingester struct {
	cfg    Config
	prod   Producer
	codec  *serde.Codec
	log    *slog.Logger
	router Router
	index  thread.Index
	blobs  BlobStore
	dedupe Deduper
	now    func() time.Time
	ids    *IDGenerator
	prop   propagation.TextMapPropagator
	tracer trace.Tracer
}

// New returns an Ingester for cfg (zero fields take defaults) and opts.
func New(cfg Config, opts Options) (*Ingester, error) {
	cfg = cfg.withDefaults()
	if err := errors.Join(cfg.Validate(), opts.Validate()); err != nil {
		return nil, fmt.Errorf("configuring ingest: %w", err)
	}
	in := &Ingester{
		cfg:    cfg,
		prod:   opts.Producer,
		codec:  opts.Codec,
		log:    opts.Logger,
		router: opts.Router,
		index:  opts.ThreadIndex,
		blobs:  opts.Blobs,
		dedupe: opts.Dedupe,
		now:    opts.Now,
	}
	if in.router == nil {
		in.router = NewDomainRouter(cfg.Domains)
	}
	if in.now == nil {
		in.now = time.Now
	}
	in.ids = NewIDGenerator(in.now, opts.Entropy)
	in.prop = opts.Propagator
	if in.prop == nil {
		// Not otel.GetTextMapPropagator: no global state (STYLE.md); telemetry passes its own.
		in.prop = propagation.TraceContext{}
	}
	tp := opts.TracerProvider
	if tp == nil {
		tp = tracenoop.NewTracerProvider()
	}
	in.tracer = tp.Tracer("github.com/mailpipe/mailpipe/pkg/ingest")
	return in, nil
}

// Resolve resolves one recipient with the configured Router. Front-ends call it at RCPT time
// to refuse unknown recipients before the message is sent.
func (in *Ingester) Resolve(rcpt string) (Route, bool) {
	return in.router.Resolve(rcpt)
}

// Accept records raw (an RFC 5322 message) received with env on mail.raw.v1. It is
// [Ingester.AcceptStream] over raw, bounded as a whole by Config.AcceptTimeout, for front-ends
// that already hold the message; raw is not modified or retained.
func (in *Ingester) Accept(ctx context.Context, env events.Envelope, raw []byte) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, in.cfg.AcceptTimeout)
	defer cancel()
	return in.AcceptStream(ctx, env, bytes.NewReader(raw))
}

// resolveAll resolves every recipient. One record carries one route, so recipients of different
// routes cannot share a record; the SMTP front-end avoids that by deferring such recipients to a
// second transaction (452 4.5.3 at RCPT time).
func (in *Ingester) resolveAll(rcpts []string) (Route, error) {
	var first Route
	for i, rcpt := range rcpts {
		r, ok := in.router.Resolve(rcpt)
		if !ok {
			return Route{}, fmt.Errorf("%w: %s", ErrNoRoute, rcpt)
		}
		if i == 0 {
			first = r
			continue
		}
		if r != first {
			return Route{}, fmt.Errorf("%w: recipients %s and %s belong to different routes", ErrInvalid, rcpts[0], rcpt)
		}
	}
	return first, nil
}

// produce encodes rec and writes it keyed by its thread key, waiting for the acknowledgement.
func (in *Ingester) produce(ctx context.Context, rec *events.Raw) error {
	val, err := in.codec.Encode(kafka.TopicRaw, rec)
	if err != nil {
		return fmt.Errorf("encoding raw record: %w", err)
	}
	r := &kgo.Record{Topic: in.cfg.Topic, Key: []byte(rec.ThreadKey), Value: val}
	in.prop.Inject(ctx, kafka.HeaderCarrier{Record: r}) // no-op when ctx carries no span
	if err := in.prod.ProduceSync(ctx, r).FirstErr(); err != nil {
		return fmt.Errorf("producing raw record: %w", err)
	}
	return nil
}

// normalizeRcpts normalizes recipients with mailid.Address (lower-cased bare addresses, as the
// schema records them) and drops empties and duplicates while keeping the order.
func normalizeRcpts(rcpts []string) []string {
	out := make([]string, 0, len(rcpts))
	for _, r := range rcpts {
		r = mailid.Address(r)
		if r != "" && !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}

// retryKey identifies a delivery: one message (its external id, mailid.ExternalID of its
// Message-ID and author) to one set of recipients. A message without a Message-ID is identified
// by its synthetic id (sender, date, subject and body digest) rather than a hash of its bytes:
// the Received header smtpd prepends carries the time, so the bytes of an SMTP retry never
// match. The recipients stay in the key because one message split over two transactions
// (smtpd defers recipients of another route with 452 4.5.3) is not a retry. They are sorted, so
// a client that reorders RCPT commands on retry is still recognised.
func retryKey(identity string, h thread.Headers, env events.Envelope) string {
	sender := h.From
	if mailid.Address(sender) == "" {
		sender = env.MailFrom
	}
	sum := sha256.New()
	sum.Write([]byte(mailid.ExternalID(identity, sender)))
	for _, r := range slices.Sorted(slices.Values(env.RcptTo)) {
		sum.Write([]byte{0})
		sum.Write([]byte(r))
	}
	return "ingest:retry:" + hex.EncodeToString(sum.Sum(nil))
}
