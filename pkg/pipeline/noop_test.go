package pipeline

import (
	"bytes"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/app"
	"github.com/mailpipe/mailpipe/pkg/envconf"
	"github.com/mailpipe/mailpipe/pkg/kafka"
)

func TestNoopHandlerCopiesTheRecord(t *testing.T) {
	// given: an input record with a key, a value, headers and the fields the producer owns.
	in := &kgo.Record{
		Topic: kafka.TopicRaw, Key: []byte("thread-1"), Value: []byte("\x00\x00\x00\x00\x01avro bytes"),
		Headers:   []kgo.RecordHeader{{Key: "traceparent", Value: []byte("00-abc-def-01")}, {Key: "x", Value: nil}},
		Partition: 3, Offset: 42,
	}
	// when
	out, err := noopHandler(kafka.TopicParsed)(t.Context(), in)
	// then: one record on the output topic with the same bytes; partition, offset and timestamp
	// are left to the producer.
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 {
		t.Fatalf("%d outputs, want 1", len(out))
	}
	o := out[0]
	if o.Topic != kafka.TopicParsed || !bytes.Equal(o.Key, in.Key) || !bytes.Equal(o.Value, in.Value) {
		t.Errorf("output %s %q %q, want %s %q %q", o.Topic, o.Key, o.Value, kafka.TopicParsed, in.Key, in.Value)
	}
	if !slices.EqualFunc(o.Headers, in.Headers, func(a, b kgo.RecordHeader) bool { return a.Key == b.Key && bytes.Equal(a.Value, b.Value) }) {
		t.Errorf("headers %v, want %v", o.Headers, in.Headers)
	}
	if o.Partition != 0 || o.Offset != 0 || !o.Timestamp.IsZero() {
		t.Errorf("output sets partition %d, offset %d, timestamp %v; the producer chooses them", o.Partition, o.Offset, o.Timestamp)
	}
	// The stage propagates trace context by setting headers on the output: that must not
	// change the input's.
	o.Headers[0].Value = []byte("changed")
	if string(in.Headers[0].Value) != "00-abc-def-01" {
		t.Error("the output shares the input's header slice")
	}
}

func TestStageNoopIsOffByDefault(t *testing.T) {
	for _, tt := range []struct {
		env  map[string]string
		want bool
	}{
		{nil, false},
		{map[string]string{"MAILPIPE_STAGE_NOOP": "true"}, true},
	} {
		cfg, err := envconf.Load[ParserConfig](app.Env{Getenv: func(k string) string { return tt.env[k] }}, EnvPrefix)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Noop != tt.want {
			t.Errorf("env %v: Noop = %v, want %v", tt.env, cfg.Noop, tt.want)
		}
	}
}
