package replay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/kafka"
)

// Audit is the record a replay leaves on the audit topic (JSON, key the replay's name): who
// replayed what, when, and with which result. `dlq ls` also reads it to tell which dead letters
// were replayed: those inside a PartitionRange that the Filter selected and that were not
// skipped as looping.
type Audit struct {
	Name       string           `json:"name"`
	Operator   string           `json:"operator"`
	Topic      string           `json:"topic"`
	Filter     Filter           `json:"filter"`
	MaxReplays int              `json:"max_replays"`
	Force      bool             `json:"force,omitempty"`
	DryRun     bool             `json:"dry_run,omitempty"`
	Partitions []PartitionRange `json:"partitions"`
	Counts
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// Error is why the replay stopped early (interrupted, a write failed); the partitions
	// then say how far it got.
	Error string `json:"error,omitempty"`
}

// PartitionRange is the part [From, To) of one DLQ partition a replay went through, and what
// it did there.
type PartitionRange struct {
	Span
	Counts
}

// replayed reports whether the audited replay sent l back to its topic.
func (a Audit) replayed(ctx context.Context, l *letter) bool {
	if a.DryRun || a.Topic != l.rec.Topic {
		return false
	}
	in := slices.ContainsFunc(a.Partitions, func(pr PartitionRange) bool {
		return pr.Partition == l.rec.Partition && l.rec.Offset >= pr.From && l.rec.Offset < pr.To
	})
	if !in || !a.Filter.match(ctx, l) {
		return false
	}
	return a.Force || l.info.ReplayCount < a.MaxReplays
}

// EnsureAuditTopic creates the audit topic with its spec from package kafka if it is missing.
// An existing topic is left as it is: its configs are `mailpipe topics apply`'s business.
func EnsureAuditTopic(ctx context.Context, adm *kadm.Client, topic string) error {
	details, err := adm.ListTopics(kadm.WithAuthorizedOps(ctx), topic)
	if err != nil {
		return fmt.Errorf("looking up %s: %w", topic, err)
	}
	if d, ok := details[topic]; ok && d.Err == nil {
		return nil
	}
	spec := kafka.TopicSpec{Name: topic, Partitions: 1, ReplicationFactor: -1}
	for _, s := range kafka.TopicSpecs(kafka.TopicsConfig{}) {
		if s.Name == kafka.TopicDLQAudit {
			spec = s
		}
	}
	configs := map[string]*string{}
	for k, v := range spec.Configs {
		configs[k] = kadm.StringPtr(v)
	}
	if _, err := adm.CreateTopic(ctx, spec.Partitions, spec.ReplicationFactor, configs, topic); err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("creating %s: %w", topic, err)
	}
	return nil
}

// WriteAudit writes a to topic and waits for the broker's acknowledgement.
func WriteAudit(ctx context.Context, cl *kgo.Client, topic string, a Audit) error {
	b, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("encoding audit record: %w", err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte(a.Name), Value: b}).FirstErr(); err != nil {
		return fmt.Errorf("writing audit record to %s: %w", topic, err)
	}
	return nil
}

// ReadAudits returns the audit records on topic, oldest start first. A missing topic means no
// replay happened yet: no records and no error. stall is the scan's safety net (0: DefaultStall).
func ReadAudits(ctx context.Context, newClient NewClient, topic string, stall time.Duration) ([]Audit, error) {
	cl, err := newClient()
	if err != nil {
		return nil, fmt.Errorf("creating kafka client: %w", err)
	}
	spans, err := listSpans(ctx, kadm.NewClient(cl), topic)
	cl.Close()
	if errors.Is(err, ErrNoTopic) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Audit
	err = scan(ctx, newClient, topic, spans, stall, func(r *kgo.Record) error {
		var a Audit
		if err := json.Unmarshal(r.Value, &a); err != nil {
			return fmt.Errorf("decoding audit record %s[%d]@%d: %w", topic, r.Partition, r.Offset, err)
		}
		out = append(out, a)
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(out, func(a, b Audit) int { return a.Started.Compare(b.Started) })
	return out, nil
}
