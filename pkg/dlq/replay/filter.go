package replay

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/dlq"
	"github.com/mailpipe/mailpipe/pkg/failure"
)

// Decoder decodes a topic's value; *serde.Codec is one. Decoding into *any gives maps.
type Decoder interface {
	Decode(ctx context.Context, topic string, b []byte, v any) error
}

// Filter selects dead letters. Zero fields select everything. It is stored in the audit record
// of a replay, so `dlq ls` can tell later which dead letters that replay sent back.
type Filter struct {
	// Partitions of the DLQ topic; empty means all.
	Partitions []int32 `json:"partitions,omitempty"`
	// From and To bound the DLQ offsets, From inclusive and To exclusive; To 0 means the end.
	// They apply to every selected partition.
	From int64 `json:"from,omitempty"`
	To   int64 `json:"to,omitempty"`
	// Stages and Classes match the dead letter's stage and error class (any of them).
	Stages  []string        `json:"stages,omitempty"`
	Classes []failure.Class `json:"classes,omitempty"`
	// Since (inclusive) and Until (exclusive) bound the time of the last failure.
	Since time.Time `json:"since,omitzero"`
	Until time.Time `json:"until,omitzero"`
	// Tenant and MessageID match the decoded value's tenant and message_id fields (top level,
	// or inside its "message" record). A value that cannot be decoded matches neither.
	Tenant    string `json:"tenant,omitempty"`
	MessageID string `json:"message_id,omitempty"`
}

// Validate reports a filter that can select nothing by construction.
func (f Filter) Validate() error {
	var errs []error
	if f.From < 0 {
		errs = append(errs, fmt.Errorf("from offset %d is negative", f.From))
	}
	if f.To < 0 || (f.To > 0 && f.To <= f.From) {
		errs = append(errs, fmt.Errorf("to offset %d must be after from offset %d", f.To, f.From))
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		errs = append(errs, fmt.Errorf("until %s must be after since %s", f.Until.Format(time.RFC3339), f.Since.Format(time.RFC3339)))
	}
	for _, p := range f.Partitions {
		if p < 0 {
			errs = append(errs, fmt.Errorf("partition %d is negative", p))
		}
	}
	return errors.Join(errs...)
}

// spans narrows the topic's partition spans to the filter's partitions and offsets.
func (f Filter) spans(all []Span) ([]Span, error) {
	var out []Span
	for _, s := range all {
		if len(f.Partitions) > 0 && !slices.Contains(f.Partitions, s.Partition) {
			continue
		}
		s.From = max(s.From, f.From)
		if f.To > 0 {
			s.To = min(s.To, f.To)
		}
		s.To = max(s.To, s.From)
		out = append(out, s)
	}
	for _, p := range f.Partitions {
		if !slices.ContainsFunc(all, func(s Span) bool { return s.Partition == p }) {
			return nil, fmt.Errorf("partition %d does not exist (the topic has %d)", p, len(all))
		}
	}
	return out, nil
}

func (f Filter) needsValue() bool { return f.Tenant != "" || f.MessageID != "" }

// letter is a dead letter with its parsed context and, on demand, its decoded value.
type letter struct {
	rec  *kgo.Record
	info dlq.Info
	dec  Decoder

	decoded   bool
	tenant    string
	messageID string
	decodeErr error
}

func (l *letter) fields(ctx context.Context) error {
	if l.decoded {
		return l.decodeErr
	}
	l.decoded = true
	if l.dec == nil {
		l.decodeErr = errors.New("no decoder")
		return l.decodeErr
	}
	var v any
	if err := l.dec.Decode(ctx, l.info.OriginalTopic, l.rec.Value, &v); err != nil {
		l.decodeErr = err
		return err
	}
	l.tenant, l.messageID = valueFields(v)
	return nil
}

// valueFields finds tenant and message_id at the top of a decoded value or in its "message"
// record: mail.raw.v1 and mail.parsed.v1 carry them at the top, classified and enriched inside.
func valueFields(v any) (tenant, messageID string) {
	m, _ := v.(map[string]any)
	if m == nil {
		return "", ""
	}
	get := func(m map[string]any, k string) string { s, _ := m[k].(string); return s }
	tenant, messageID = get(m, "tenant"), get(m, "message_id")
	if inner, ok := m["message"].(map[string]any); ok {
		if tenant == "" {
			tenant = get(inner, "tenant")
		}
		if messageID == "" {
			messageID = get(inner, "message_id")
		}
	}
	return tenant, messageID
}

// match reports whether l passes every condition of f except the partition and offset bounds,
// which the scan applies.
func (f Filter) match(ctx context.Context, l *letter) bool {
	if len(f.Stages) > 0 && !slices.Contains(f.Stages, l.info.Stage) {
		return false
	}
	if len(f.Classes) > 0 && !slices.Contains(f.Classes, l.info.Class) {
		return false
	}
	if !f.Since.IsZero() || !f.Until.IsZero() {
		t := l.info.LastFailure
		if t.IsZero() || t.Before(f.Since) || (!f.Until.IsZero() && !t.Before(f.Until)) {
			return false
		}
	}
	if f.needsValue() {
		if l.fields(ctx) != nil {
			return false
		}
		if f.Tenant != "" && l.tenant != f.Tenant {
			return false
		}
		if f.MessageID != "" && l.messageID != f.MessageID {
			return false
		}
	}
	return true
}
