package kafkaroute

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/route"
	"github.com/mailpipe/mailpipe/pkg/serde"
)

// Errors of [Store] methods that callers branch on (the admin API maps them to 404 and 409).
// Validation problems are a *route.ValidationError (errors.Is route.ErrInvalid); any other error
// means the write may not have happened and can be retried.
var (
	// ErrNotFound: no route with that id.
	ErrNotFound = errors.New("route not found")
	// ErrExists: Create was given the id of an existing route (or, without an id, the pattern of
	// one, whose derived id is then taken).
	ErrExists = errors.New("route already exists")
)

// Producer writes records synchronously; *kgo.Client from kafka.NewProducer fits (acks=all,
// idempotent). ProduceSync must return only when every record is acknowledged or failed.
type Producer interface {
	ProduceSync(ctx context.Context, rs ...*kgo.Record) kgo.ProduceResults
}

// StoreOptions are the dependencies of a [Store]. Producer, Codec, Follower and Logger are
// required.
type StoreOptions struct {
	// Producer writes the routes topic. Build it with kafka.NewProducer so acks=all holds.
	Producer Producer
	// Codec encodes events.Route.
	Codec *serde.Codec
	// Follower is the follower of the same topic whose table the store validates against and
	// waits on; it must be loaded (Load) and running (Run) for writes to return.
	Follower *Follower
	// Logger receives one line per write.
	Logger *slog.Logger
	// Now is the clock for updated_at. Nil: time.Now.
	Now func() time.Time
}

// Validate reports missing required dependencies.
func (o StoreOptions) Validate() error {
	var errs []error
	if o.Producer == nil {
		errs = append(errs, errors.New("producer is required"))
	}
	if o.Codec == nil {
		errs = append(errs, errors.New("codec is required"))
	}
	if o.Follower == nil {
		errs = append(errs, errors.New("follower is required"))
	}
	if o.Logger == nil {
		errs = append(errs, errors.New("logger is required"))
	}
	return errors.Join(errs...)
}

// Store reads routes from a follower's table and writes them to the routes topic, keyed by route
// id. Every write is validated against the current table first and returns only when the
// follower's table shows it, so a read after a write sees it.
//
// Writes through one Store are serialized, so its checks hold for its own writes. Two processes
// writing at the same moment can still store two routes with the same pattern; every follower
// then keeps the one written first (route.NewSnapshot) and reports the other in Problems.
type Store struct {
	prod  Producer
	codec *serde.Codec
	f     *Follower
	log   *slog.Logger
	now   func() time.Time
	mu    sync.Mutex
}

// NewStore returns a store for opts.
func NewStore(opts StoreOptions) (*Store, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("configuring the route store: %w", err)
	}
	s := &Store{prod: opts.Producer, codec: opts.Codec, f: opts.Follower, log: opts.Logger, now: opts.Now}
	if s.now == nil {
		s.now = time.Now
	}
	return s, nil
}

// Check reports whether the store can serve: nil once its follower loaded the table
// (ErrNotLoaded before). Reads before that see an empty table and writes wait.
func (s *Store) Check(ctx context.Context) error { return s.f.Check(ctx) }

// List returns the routes of the table (see route.Snapshot.Routes for the order).
func (s *Store) List() []events.Route { return s.f.Table().Load().Routes() }

// Get returns the route with id from the table.
func (s *Store) Get(id string) (events.Route, bool) { return s.f.Table().Load().Get(id) }

// Problems returns the routes on the topic the table leaves out; see Follower.Problems.
func (s *Store) Problems() []route.Problem { return s.f.Problems() }

// Create stores r as a new route and returns it as stored (canonical, with its id and
// updated_at). It fails with ErrExists when the id is taken, and with a *route.ValidationError
// when r is invalid or its pattern is taken.
func (s *Store) Create(ctx context.Context, r events.Route) (events.Route, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := s.f.Table().Load()
	c, err := snap.Validate(r)
	if err != nil {
		return events.Route{}, err
	}
	if _, ok := snap.Get(c.ID); ok || s.f.Known(c.ID) {
		return events.Route{}, fmt.Errorf("%w: %s", ErrExists, c.ID)
	}
	out, err := s.write(ctx, []events.Route{c})
	if err != nil {
		return events.Route{}, err
	}
	return out[0], nil
}

// Put stores r, creating the route or replacing the one with its id, and returns it as stored.
func (s *Store) Put(ctx context.Context, r events.Route) (events.Route, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.f.Table().Load().Validate(r)
	if err != nil {
		return events.Route{}, err
	}
	out, err := s.write(ctx, []events.Route{c})
	if err != nil {
		return events.Route{}, err
	}
	return out[0], nil
}

// Import stores routes as one change: every route is checked (see route.Snapshot.ValidateBatch)
// before any is written, and a *route.ValidationError lists every problem with the route's index.
// Routes with the id of an existing route replace it. The records are produced together; if the
// broker refuses some, the error names them, and running the same import again is safe.
func (s *Store) Import(ctx context.Context, routes []events.Route) ([]events.Route, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs, err := s.f.Table().Load().ValidateBatch(routes)
	if err != nil {
		return nil, err
	}
	return s.write(ctx, cs)
}

// Delete removes the route with id by writing a tombstone. It fails with ErrNotFound when the
// topic holds no such route (not even one the table leaves out).
func (s *Store) Delete(ctx context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.Get(id); !ok && !s.f.Known(id) {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err := s.produce(ctx, []*kgo.Record{{Topic: s.f.Topic(), Key: []byte(id)}}); err != nil {
		return err
	}
	s.log.InfoContext(ctx, "deleted route", slog.String("route_id", id))
	return nil
}

// write stamps, encodes and produces canonical routes, and waits for the table to show them.
func (s *Store) write(ctx context.Context, rs []events.Route) ([]events.Route, error) {
	// Avro timestamp-micros: truncate so the stored route reads back equal.
	now := s.now().UTC().Truncate(time.Microsecond)
	recs := make([]*kgo.Record, len(rs))
	for i := range rs {
		rs[i].UpdatedAt = now
		val, err := s.codec.Encode(kafka.TopicRoutes, &rs[i])
		if err != nil {
			return nil, fmt.Errorf("encoding route %s: %w", rs[i].ID, err)
		}
		recs[i] = &kgo.Record{Topic: s.f.Topic(), Key: []byte(rs[i].ID), Value: val}
	}
	if err := s.produce(ctx, recs); err != nil {
		return nil, err
	}
	for _, r := range rs {
		s.log.InfoContext(ctx, "stored route", slog.String("route_id", r.ID), slog.String("pattern", r.Pattern), slog.String("tenant", r.Tenant))
	}
	return rs, nil
}

// produce writes recs and waits until the follower applied the last of them per partition.
func (s *Store) produce(ctx context.Context, recs []*kgo.Record) error {
	res := s.prod.ProduceSync(ctx, recs...)
	var failed []string
	var errs []error
	last := map[int32]int64{}
	for _, r := range res {
		if r.Err != nil {
			failed = append(failed, string(r.Record.Key))
			errs = append(errs, r.Err)
			continue
		}
		last[r.Record.Partition] = max(last[r.Record.Partition], r.Record.Offset)
	}
	if len(errs) > 0 {
		return fmt.Errorf("writing routes (%d of %d not written: %s; writing them again is safe): %w",
			len(failed), len(recs), strings.Join(failed, ", "), errors.Join(errs...))
	}
	for p, off := range last {
		if err := s.f.WaitFor(ctx, p, off); err != nil {
			return fmt.Errorf("routes written, but the table did not show them yet: %w", err)
		}
	}
	return nil
}
