package kafka

import (
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/propagation"
)

// HeaderCarrier adapts a record's headers to OpenTelemetry's propagation.TextMapCarrier, so a
// propagator can inject the trace context into a record we produce and extract it from one we
// consume:
//
//	prop.Inject(ctx, kafka.HeaderCarrier{Record: out})
//	ctx = prop.Extract(ctx, kafka.HeaderCarrier{Record: in})
//
// Keys match exactly (W3C keys are lower-case). It is not safe for concurrent use with other
// writers of the same record.
type HeaderCarrier struct {
	Record *kgo.Record
}

var _ propagation.TextMapCarrier = HeaderCarrier{}

// Get returns the value of the first header named key, or "".
func (c HeaderCarrier) Get(key string) string {
	for _, h := range c.Record.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// Set replaces every header named key with one header holding value.
func (c HeaderCarrier) Set(key, value string) {
	hs := c.Record.Headers[:0:0]
	for _, h := range c.Record.Headers {
		if h.Key != key {
			hs = append(hs, h)
		}
	}
	c.Record.Headers = append(hs, kgo.RecordHeader{Key: key, Value: []byte(value)})
}

// Keys returns the header names, each once, in first-seen order.
func (c HeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(c.Record.Headers))
	seen := make(map[string]bool, len(c.Record.Headers))
	for _, h := range c.Record.Headers {
		if !seen[h.Key] {
			seen[h.Key] = true
			keys = append(keys, h.Key)
		}
	}
	return keys
}
