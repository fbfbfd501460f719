package ingest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/mailid"
	"github.com/mailpipe/mailpipe/pkg/telemetry"
	"github.com/mailpipe/mailpipe/pkg/thread"
)

// AcceptStream records the RFC 5322 message read from r, received with env, on mail.raw.v1.
//
// It returns nil only after the record is acknowledged by the broker; the front-end may then
// acknowledge the message to the sender. [ErrInvalid], [ErrNoRoute] and [ErrTooLarge] are
// permanent; any other error is temporary and nothing was recorded (a blob stored for the
// claim check is deleted again when the store can; one left behind is unreferenced).
// [ErrInFlight] is temporary too: another attempt of the same delivery is being recorded.
//
// Memory stays bounded whatever the message size: AcceptStream holds at most
// Config.InlineLimit + 1 bytes of the message (Config.MaxInlineBytes + 1 without a blob
// store), which is also where the header block for the thread key is read from. A larger message
// streams to the blob store while its SHA-256 and body digest are computed, and is refused with
// ErrTooLarge past Config.MaxMessageBytes.
//
// r is read to its end unless recipients are refused first, a size limit is hit or reading
// fails; a front-end that must consume the rest (SMTP DATA) drains it itself. ctx bounds the
// whole call, reading r included, so the front-end's own read deadlines apply; once r is read,
// recording (dedupe, produce, thread index) is bounded by Config.AcceptTimeout.
//
// env.RcptTo is normalised (lower-cased, duplicates removed) before it is recorded;
// env.Source, ClientIP, Helo and TLS are recorded as given.
//
// Each call starts a new trace with a server span named "<env.Source> accept" ("smtp accept",
// "http accept"; linked to the span in ctx, if any) whose context goes into the record headers,
// so that every stage continues it. The span carries the tenant, route id and message id, never
// addresses or subjects.
func (in *Ingester) AcceptStream(ctx context.Context, env events.Envelope, r io.Reader) (res Result, err error) {
	ctx, span := in.startAccept(ctx, env.Source)
	defer func() { endAccept(span, res, err) }()
	env.RcptTo = normalizeRcpts(env.RcptTo)
	if len(env.RcptTo) == 0 {
		return Result{}, fmt.Errorf("%w: no recipients", ErrInvalid)
	}
	route, err := in.resolveAll(env.RcptTo)
	if err != nil {
		return Result{}, err
	}
	id, err := in.ids.New()
	if err != nil {
		return Result{}, err
	}
	span.SetAttributes(attribute.String(AttrTenant, route.Tenant), attribute.String(AttrRouteID, route.ID), attribute.String(AttrMessageID, id))
	ctx = telemetry.WithTenant(ctx, route.Tenant)
	sp, err := in.spool(ctx, id, r)
	if err != nil {
		return Result{}, err
	}
	recorded := false
	defer func() {
		if !recorded && sp.ref != "" {
			in.dropBlob(ctx, sp.ref)
		}
	}()
	if sp.size == 0 {
		return Result{}, fmt.Errorf("%w: empty message", ErrInvalid)
	}

	// The in-flight retry key lives AcceptTimeout (plus a margin) from here, so everything that
	// can still change the outcome runs under that bound.
	ctx, cancel := context.WithTimeout(ctx, in.cfg.AcceptTimeout)
	defer cancel()

	h := readHeaders(sp.head, sp.bodyDigest)
	tk, pending := in.threadKey(ctx, h)
	// tk.MessageID is the synthetic id for a message without one; the record keeps it empty.
	msgID := mailid.MessageID(h.MessageID)
	digest := hex.EncodeToString(sp.sum[:])

	var guard retryGuard
	if in.dedupe != nil {
		g, dup, err := in.claim(ctx, retryKey(tk.MessageID, h, env))
		if err != nil {
			return Result{}, err
		}
		if dup {
			in.log.InfoContext(ctx, "dropped client retry of a recorded message",
				slog.String("thread_key", tk.Key), slog.String("sha256", digest), slog.String("tenant", route.Tenant))
			return Result{ThreadKey: tk.Key, Duplicate: true}, nil
		}
		guard = g
	}
	defer func() {
		if in.dedupe != nil {
			in.settle(ctx, guard, recorded)
		}
	}()

	rec := events.Raw{
		ID: id,
		// Avro timestamp-micros: truncate so the record decodes to the same instant.
		ReceivedAt: in.now().UTC().Truncate(time.Microsecond),
		Envelope:   env,
		Tenant:     route.Tenant,
		RouteID:    route.ID,
		RouteTag:   route.Tag,
		ThreadKey:  tk.Key,
		MessageID:  msgID,
		Size:       sp.size,
		Sha256:     digest,
	}
	if sp.ref != "" {
		rec.RawBlobRef = &sp.ref
	} else {
		rec.Raw = &sp.head // encoded (copied) before AcceptStream returns
	}
	if err := in.produce(ctx, &rec); err != nil {
		return Result{}, err
	}
	recorded = true
	in.remember(ctx, pending)
	in.log.InfoContext(ctx, "accepted message",
		slog.String("id", id), slog.String("thread_key", tk.Key), slog.String("tenant", route.Tenant),
		slog.String("route_id", route.ID), slog.String("source", env.Source), slog.Int64("size", sp.size),
		slog.Bool("claim_check", rec.RawBlobRef != nil), slog.Int("rcpts", len(env.RcptTo)))
	return Result{ID: id, ThreadKey: tk.Key}, nil
}

// spooled is a message read by spool.
type spooled struct {
	// head is the whole message when it is carried inline (ref empty); otherwise its first
	// bytes, which hold the header block.
	head       []byte
	ref        string // claim-check blob; empty when inline
	size       int64
	sum        [sha256.Size]byte
	bodyDigest string
}

// spool reads the message: up to the inline bound into memory and, past it, through to the blob
// store under "raw/<id>", hashing all the way.
func (in *Ingester) spool(ctx context.Context, id string, r io.Reader) (spooled, error) {
	limit := in.cfg.InlineLimit
	if in.blobs == nil {
		limit = in.cfg.MaxInlineBytes
	}
	sum, body := sha256.New(), thread.NewBodyHasher()
	hashed := io.TeeReader(r, hashWriter{sum, body})
	head, err := io.ReadAll(io.LimitReader(hashed, limit+1))
	if err != nil {
		return spooled{}, fmt.Errorf("reading message: %w", err)
	}
	sp := spooled{head: head, size: int64(len(head))}
	switch {
	case sp.size <= limit:
	case in.blobs == nil:
		return spooled{}, fmt.Errorf("%w: more than %d bytes without a blob store", ErrTooLarge, in.cfg.MaxInlineBytes)
	case sp.size > in.cfg.MaxMessageBytes: // MaxMessageBytes == InlineLimit
		return spooled{}, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, in.cfg.MaxMessageBytes)
	default:
		rest := &capReader{r: hashed, left: in.cfg.MaxMessageBytes - sp.size}
		counted := &countReader{r: io.MultiReader(bytes.NewReader(head), rest)}
		ref, err := in.blobs.Put(ctx, "raw/"+id, counted)
		switch {
		case rest.over:
			return spooled{}, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, in.cfg.MaxMessageBytes)
		case err != nil:
			return spooled{}, fmt.Errorf("storing raw message in the blob store: %w", err)
		}
		sp.ref, sp.size = ref, counted.n
	}
	copy(sp.sum[:], sum.Sum(nil))
	sp.bodyDigest = body.Digest()
	return sp, nil
}

// hashWriter feeds the message hash and the body digest; neither fails.
type hashWriter struct {
	sum  hash.Hash
	body *thread.BodyHasher
}

func (w hashWriter) Write(p []byte) (int, error) {
	w.sum.Write(p)
	_, _ = w.body.Write(p)
	return len(p), nil
}

// errOverCap stops a blob Put at the size cap; spool reports ErrTooLarge instead.
var errOverCap = errors.New("message over the size cap")

// capReader passes at most left bytes and fails (over = true) when r holds more.
type capReader struct {
	r    io.Reader
	left int64
	over bool
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		// One byte more decides between "exactly at the cap" and "over it".
		var b [1]byte
		n, err := c.r.Read(b[:])
		if n > 0 {
			c.over = true
			return 0, errOverCap
		}
		return 0, err
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}

// countReader counts the bytes read through it.
type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// Span attributes of the accept span (see [Ingester.AcceptStream]).
const (
	AttrTenant    = "mailpipe.tenant"
	AttrRouteID   = "mailpipe.route.id"
	AttrMessageID = "mailpipe.message.id"
	// AttrDuplicate is true on the span of a client retry that recorded nothing.
	AttrDuplicate = "mailpipe.duplicate"
)

// startAccept starts the root span of a message's trace.
func (in *Ingester) startAccept(ctx context.Context, source string) (context.Context, trace.Span) {
	if source == "" {
		source = "ingest"
	}
	opts := []trace.SpanStartOption{trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindServer)}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}))
	}
	return in.tracer.Start(ctx, source+" accept", opts...)
}

// endAccept ends the accept span. A failure is recorded by its kind only: the error text can
// name a recipient.
func endAccept(span trace.Span, res Result, err error) {
	defer span.End()
	if res.Duplicate {
		span.SetAttributes(attribute.Bool(AttrDuplicate, true))
	}
	if err == nil {
		return
	}
	kind := "temporary"
	for _, e := range []struct {
		err  error
		kind string
	}{{ErrInvalid, "invalid"}, {ErrNoRoute, "no_route"}, {ErrTooLarge, "too_large"}, {ErrInFlight, "in_flight"}} {
		if errors.Is(err, e.err) {
			kind = e.kind
			break
		}
	}
	span.SetAttributes(attribute.String("error.type", kind))
	span.SetStatus(codes.Error, kind)
}
