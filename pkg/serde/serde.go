// Package serde encodes and decodes mailpipe's topic values in the Confluent wire format: a zero
// magic byte, a 4-byte big-endian schema id, then the Avro binary body. Any registry-aware client
// (librdkafka, the Java serializers, kcat -s avro) can therefore decode mailpipe's topics.
//
// Schema ids come from a Schema Registry when one is configured (WithRegistry): the embedded
// schemas are registered under the subject "<topic>-value" and the registry's ids are used.
// Without a registry, ids are derived deterministically from each schema's canonical form, so
// every binary built from the same schemas agrees on them without coordination.
package serde

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/mailpipe/mailpipe/schemas"
)

// magic is the first byte of every Confluent-framed value.
const magic = 0

// headerLen is the length of the Confluent framing before the Avro body.
const headerLen = 5

// EnvRegistryURL names the environment variable that, when set, selects registry-assigned ids.
const EnvRegistryURL = "MAILPIPE_SCHEMA_REGISTRY_URL"

// ErrUnknownSchema is returned by Decode when a value's schema id is neither one of the embedded
// schemas nor resolvable through the registry. Such a record goes to the DLQ with class schema.
var ErrUnknownSchema = errors.New("unknown schema id")

// ErrFraming is returned by Decode when a value is not Confluent-framed.
var ErrFraming = errors.New("value is not Confluent-framed")

type topicSchema struct {
	schema avro.Schema
	id     uint32
}

// Codec encodes and decodes topic values. It is safe for concurrent use.
type Codec struct {
	topics map[string]topicSchema
	reg    *sr.Client

	mu           sync.RWMutex
	byID         map[uint32]avro.Schema
	resolvedByID map[resolveKey]avro.Schema
}

type resolveKey struct {
	topic string
	id    uint32
}

// Option configures a Codec.
type Option interface{ apply(*config) }

type config struct {
	reg *sr.Client
}

type optFunc func(*config)

func (f optFunc) apply(c *config) { f(c) }

// WithRegistry registers the embedded schemas with the given Schema Registry and uses its ids.
// Values written with ids unknown to this binary are decoded by fetching their schema by id.
func WithRegistry(cl *sr.Client) Option { return optFunc(func(c *config) { c.reg = cl }) }

// New parses the embedded schemas and, with WithRegistry, registers them. Released schemas are
// known too, so values written by an older release still decode.
func New(ctx context.Context, opts ...Option) (*Codec, error) {
	var cfg config
	for _, o := range opts {
		o.apply(&cfg)
	}
	c := &Codec{
		topics:       map[string]topicSchema{},
		reg:          cfg.reg,
		byID:         map[uint32]avro.Schema{},
		resolvedByID: map[resolveKey]avro.Schema{},
	}
	for _, topic := range schemas.Topics() {
		src, err := schemas.Source(topic)
		if err != nil {
			return nil, err
		}
		s, err := Parse(src)
		if err != nil {
			return nil, fmt.Errorf("parsing schema of %s: %w", topic, err)
		}
		id := DeterministicID(s)
		if c.reg != nil {
			ss, err := c.reg.CreateSchema(ctx, topic+"-value", sr.Schema{Schema: src, Type: sr.TypeAvro})
			if err != nil {
				return nil, fmt.Errorf("registering schema of %s: %w", topic, err)
			}
			id = uint32(ss.ID) //nolint:gosec // registry ids are positive int32
		}
		c.topics[topic] = topicSchema{schema: s, id: id}
		c.byID[id] = s
		if rsrc, ok := schemas.ReleasedSource(topic); ok && c.reg == nil {
			rs, err := Parse(rsrc)
			if err != nil {
				return nil, fmt.Errorf("parsing released schema of %s: %w", topic, err)
			}
			c.byID[DeterministicID(rs)] = rs
		}
	}
	return c, nil
}

// NewFromEnv builds a Codec that uses the registry at $MAILPIPE_SCHEMA_REGISTRY_URL when set.
func NewFromEnv(ctx context.Context, getenv func(string) string) (*Codec, error) {
	url := getenv(EnvRegistryURL)
	if url == "" {
		return New(ctx)
	}
	cl, err := sr.NewClient(sr.URLs(url))
	if err != nil {
		return nil, fmt.Errorf("creating schema registry client: %w", err)
	}
	return New(ctx, WithRegistry(cl))
}

// Parse parses an Avro schema in a private name cache, so that two versions of one named type
// (current and released) never clash in hamba/avro's global cache.
func Parse(src string) (avro.Schema, error) {
	return avro.ParseWithCache(src, "", &avro.SchemaCache{})
}

// DeterministicID derives a schema id from the schema's canonical form: the FNV-1a hash masked
// to a positive int32, as registry ids are. Equal canonical forms give equal ids.
func DeterministicID(s avro.Schema) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(s.String())) // String is the Parsing Canonical Form.
	id := h.Sum32() & 0x7fffffff
	if id == 0 {
		id = 1 // id 0 is reserved by registries.
	}
	return id
}

// SchemaID returns the id values of topic are written with.
func (c *Codec) SchemaID(topic string) (uint32, error) {
	ts, ok := c.topics[topic]
	if !ok {
		return 0, fmt.Errorf("topic %q has no schema", topic)
	}
	return ts.id, nil
}

// Schema returns the current schema of topic.
func (c *Codec) Schema(topic string) (avro.Schema, error) {
	ts, ok := c.topics[topic]
	if !ok {
		return nil, fmt.Errorf("topic %q has no schema", topic)
	}
	return ts.schema, nil
}

// Encode marshals v with topic's schema and frames it.
func (c *Codec) Encode(topic string, v any) ([]byte, error) {
	ts, ok := c.topics[topic]
	if !ok {
		return nil, fmt.Errorf("encoding value for %s: topic has no schema", topic)
	}
	body, err := avro.Marshal(ts.schema, v)
	if err != nil {
		return nil, fmt.Errorf("encoding value for %s: %w", topic, err)
	}
	out := make([]byte, headerLen, headerLen+len(body))
	out[0] = magic
	binary.BigEndian.PutUint32(out[1:], ts.id)
	return append(out, body...), nil
}

// Frame splits a Confluent-framed value into its schema id and Avro body.
func Frame(b []byte) (uint32, []byte, error) {
	if len(b) < headerLen || b[0] != magic {
		return 0, nil, ErrFraming
	}
	return binary.BigEndian.Uint32(b[1:headerLen]), b[headerLen:], nil
}

// Decode unmarshals a framed value of topic into v (a pointer to the topic's generated type).
// A value written with an older compatible schema is resolved to the current one.
func (c *Codec) Decode(ctx context.Context, topic string, b []byte, v any) error {
	id, body, err := Frame(b)
	if err != nil {
		return fmt.Errorf("decoding value of %s: %w", topic, err)
	}
	ts, ok := c.topics[topic]
	if !ok {
		return fmt.Errorf("decoding value of %s: topic has no schema", topic)
	}
	schema := ts.schema
	if id != ts.id {
		schema, err = c.resolved(ctx, topic, id, ts.schema)
		if err != nil {
			return fmt.Errorf("decoding value of %s: %w", topic, err)
		}
	}
	if err := avro.Unmarshal(schema, body, v); err != nil {
		return fmt.Errorf("decoding value of %s: %w", topic, err)
	}
	return nil
}

// DecodeGeneric decodes a framed value with its writer schema into generic Go values (maps,
// slices, scalars), as a subscriber without generated types would. It serves `mailpipe tail`.
func (c *Codec) DecodeGeneric(ctx context.Context, b []byte) (any, error) {
	id, body, err := Frame(b)
	if err != nil {
		return nil, err
	}
	s, err := c.writer(ctx, id)
	if err != nil {
		return nil, err
	}
	var v any
	if err := avro.Unmarshal(s, body, &v); err != nil {
		return nil, fmt.Errorf("decoding value with schema %d: %w", id, err)
	}
	return v, nil
}

func (c *Codec) writer(ctx context.Context, id uint32) (avro.Schema, error) {
	c.mu.RLock()
	s, ok := c.byID[id]
	c.mu.RUnlock()
	if ok {
		return s, nil
	}
	if c.reg == nil {
		return nil, fmt.Errorf("schema id %d: %w", id, ErrUnknownSchema)
	}
	got, err := c.reg.SchemaByID(ctx, int(id))
	if err != nil {
		return nil, fmt.Errorf("fetching schema id %d: %w", id, errors.Join(ErrUnknownSchema, err))
	}
	s, err = Parse(got.Schema)
	if err != nil {
		return nil, fmt.Errorf("parsing schema id %d: %w", id, err)
	}
	c.mu.Lock()
	c.byID[id] = s
	c.mu.Unlock()
	return s, nil
}

func (c *Codec) resolved(ctx context.Context, topic string, id uint32, reader avro.Schema) (avro.Schema, error) {
	key := resolveKey{topic, id}
	c.mu.RLock()
	s, ok := c.resolvedByID[key]
	c.mu.RUnlock()
	if ok {
		return s, nil
	}
	w, err := c.writer(ctx, id)
	if err != nil {
		return nil, err
	}
	s, err = avro.NewSchemaCompatibility().Resolve(reader, w)
	if err != nil {
		return nil, fmt.Errorf("resolving writer schema %d to the current schema: %w", id, err)
	}
	c.mu.Lock()
	c.resolvedByID[key] = s
	c.mu.Unlock()
	return s, nil
}

// CheckBackward reports whether a reader using the current schema can decode records written
// with the released one, with a sentence naming what breaks when it cannot.
func CheckBackward(current, released string) error {
	cur, err := Parse(current)
	if err != nil {
		return fmt.Errorf("parsing current schema: %w", err)
	}
	rel, err := Parse(released)
	if err != nil {
		return fmt.Errorf("parsing released schema: %w", err)
	}
	if err := avro.NewSchemaCompatibility().Compatible(cur, rel); err != nil {
		return fmt.Errorf("current schema cannot read records of the released one: %w", err)
	}
	return nil
}
