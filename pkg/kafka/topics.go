package kafka

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Topic names. The version suffix is part of the name: an incompatible change gets a new topic.
const (
	TopicRaw        = "mail.raw.v1"        // ingress → parser; key thread key
	TopicParsed     = "mail.parsed.v1"     // parser → classifier, subscribers
	TopicClassified = "mail.classified.v1" // classifier → enricher, subscribers
	TopicEnriched   = "mail.enriched.v1"   // enricher → crm-sink, subscribers
	TopicCRM        = "mail.crm.v1"        // crm-sink outcomes
	TopicLake       = "mail.lake.v1"       // one flat row per message, key message id
	TopicDLQ        = "mail.dlq.v1"        // dead letters of every stage, key original key
	TopicRoutes     = "mail.routes.v1"     // compacted route table, key route id
	TopicDLQAudit   = "mail.dlq.audit.v1"  // one record per DLQ replay (who, what, when)
)

// Defaults of [TopicsConfig].
const (
	DefaultPartitions   = 12
	DefaultRetention    = 7 * 24 * time.Hour
	DefaultDLQRetention = 30 * 24 * time.Hour
)

// TopicsConfig sizes the topic set built by [TopicSpecs].
type TopicsConfig struct {
	// Partitions per topic, default 12. It bounds the parallelism of every stage; it is applied
	// only when a topic is created (see [ApplyTopics]).
	Partitions int32
	// ReplicationFactor per topic; 0 or -1 means the broker's default.replication.factor.
	ReplicationFactor int16
	// Retention of the data topics (retention.ms), default 7 days; negative means forever.
	Retention time.Duration
	// DLQRetention of mail.dlq.v1 and mail.dlq.audit.v1, default 30 days; negative means
	// forever. Dead letters outlive data because ops replay them after a fix.
	DLQRetention time.Duration
}

// DefaultTopicsConfig returns 12 partitions, the broker's replication factor, 7 days of data
// and 30 days of dead letters.
func DefaultTopicsConfig() TopicsConfig {
	return TopicsConfig{
		Partitions:        DefaultPartitions,
		ReplicationFactor: -1,
		Retention:         DefaultRetention,
		DLQRetention:      DefaultDLQRetention,
	}
}

// TopicSpec is the desired state of one topic.
type TopicSpec struct {
	Name string
	// Partitions is the count used at creation; -1 means the broker default.
	Partitions int32
	// ReplicationFactor is used at creation; -1 means the broker default.
	ReplicationFactor int16
	// Configs are topic configs (cleanup.policy, retention.ms, …) kept in sync on every apply.
	Configs map[string]string
}

// TopicSpecs returns the spec of every mailpipe topic. Zero fields of c take the defaults of
// [DefaultTopicsConfig]. mail.routes.v1 is compacted (cleanup.policy=compact, no time-based
// retention): it is a table keyed by route id, and its latest value per key must never expire.
func TopicSpecs(c TopicsConfig) []TopicSpec {
	d := DefaultTopicsConfig()
	if c.Partitions == 0 {
		c.Partitions = d.Partitions
	}
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = d.ReplicationFactor
	}
	if c.Retention == 0 {
		c.Retention = d.Retention
	}
	if c.DLQRetention == 0 {
		c.DLQRetention = d.DLQRetention
	}
	deleted := func(name string, retention time.Duration) TopicSpec {
		return TopicSpec{
			Name:              name,
			Partitions:        c.Partitions,
			ReplicationFactor: c.ReplicationFactor,
			Configs: map[string]string{
				"cleanup.policy": "delete",
				"retention.ms":   retentionMS(retention),
			},
		}
	}
	return []TopicSpec{
		deleted(TopicRaw, c.Retention),
		deleted(TopicParsed, c.Retention),
		deleted(TopicClassified, c.Retention),
		deleted(TopicEnriched, c.Retention),
		deleted(TopicCRM, c.Retention),
		deleted(TopicLake, c.Retention),
		deleted(TopicDLQ, c.DLQRetention),
		deleted(TopicDLQAudit, c.DLQRetention),
		{
			Name:              TopicRoutes,
			Partitions:        c.Partitions,
			ReplicationFactor: c.ReplicationFactor,
			Configs:           map[string]string{"cleanup.policy": "compact"},
		},
	}
}

func retentionMS(d time.Duration) string {
	if d < 0 {
		return "-1"
	}
	return strconv.FormatInt(d.Milliseconds(), 10)
}

// ChangeKind says what [PlanTopics] found for a topic.
type ChangeKind string

// The kinds of [TopicChange].
const (
	// ChangeCreate: the topic is missing and will be created.
	ChangeCreate ChangeKind = "create"
	// ChangeAlterConfig: some configs differ from the spec and will be set.
	ChangeAlterConfig ChangeKind = "alter-config"
	// ChangePartitions: the topic has a different partition count than the spec. Apply leaves
	// it alone: adding partitions moves keys to other partitions and breaks per-thread order
	// for messages in flight, so it is an operator's decision (kadm CreatePartitions).
	ChangePartitions ChangeKind = "partitions-differ"
)

// TopicChange is one difference between a spec and the cluster.
type TopicChange struct {
	Topic string
	Kind  ChangeKind
	// Configs holds the configs to set (for create: all of them).
	Configs map[string]string
	// Detail is a human-readable explanation.
	Detail string
}

// PlanTopics compares specs with the cluster and returns the changes [ApplyTopics] would make,
// plus the [ChangePartitions] differences it would leave alone. It changes nothing.
func PlanTopics(ctx context.Context, adm *kadm.Client, specs []TopicSpec) ([]TopicChange, error) {
	if err := validateSpecs(specs); err != nil {
		return nil, err
	}
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	// WithAuthorizedOps makes kadm skip the client's metadata cache (up to MetadataMinAge old):
	// a plan made right after a create must see the new topic.
	details, err := adm.ListTopics(kadm.WithAuthorizedOps(ctx), names...)
	if err != nil {
		return nil, fmt.Errorf("listing topics: %w", err)
	}
	var existing []string
	var changes []TopicChange
	for _, s := range specs {
		d, ok := details[s.Name]
		switch {
		case !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition):
			changes = append(changes, TopicChange{
				Topic:   s.Name,
				Kind:    ChangeCreate,
				Configs: maps.Clone(s.Configs),
				Detail:  fmt.Sprintf("create with %d partitions", s.Partitions),
			})
		case d.Err != nil:
			return nil, fmt.Errorf("describing topic %s: %w", s.Name, d.Err)
		default:
			existing = append(existing, s.Name)
			if n := int32(len(d.Partitions)); s.Partitions > 0 && n != s.Partitions {
				changes = append(changes, TopicChange{
					Topic:  s.Name,
					Kind:   ChangePartitions,
					Detail: fmt.Sprintf("has %d partitions, spec says %d; left unchanged", n, s.Partitions),
				})
			}
		}
	}
	if len(existing) == 0 {
		return changes, nil
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, existing...)
	if err != nil {
		return nil, fmt.Errorf("describing topic configs: %w", err)
	}
	for _, s := range specs {
		if !slices.Contains(existing, s.Name) || len(s.Configs) == 0 {
			continue
		}
		rc, err := rcs.On(s.Name, nil)
		if err == nil {
			err = rc.Err
		}
		if err != nil {
			return nil, fmt.Errorf("describing configs of %s: %w", s.Name, err)
		}
		current := make(map[string]string, len(rc.Configs))
		for _, c := range rc.Configs {
			current[c.Key] = c.MaybeValue()
		}
		diff := map[string]string{}
		for _, k := range slices.Sorted(maps.Keys(s.Configs)) {
			if cur, ok := current[k]; !ok || cur != s.Configs[k] {
				diff[k] = s.Configs[k]
			}
		}
		if len(diff) > 0 {
			changes = append(changes, TopicChange{
				Topic:   s.Name,
				Kind:    ChangeAlterConfig,
				Configs: diff,
				Detail:  fmt.Sprintf("set %v", diff),
			})
		}
	}
	return changes, nil
}

// ApplyTopics makes the cluster match specs: it creates missing topics with their partitions,
// replication factor and configs, and sets configs that differ on existing ones (incremental
// alter, so configs not named in a spec are left alone). It never deletes topics, removes configs
// or changes partition counts (see [ChangePartitions]). Running it twice is a no-op; a topic
// created concurrently by someone else is not an error.
func ApplyTopics(ctx context.Context, adm *kadm.Client, specs []TopicSpec) error {
	changes, err := PlanTopics(ctx, adm, specs)
	if err != nil {
		return err
	}
	bySpec := make(map[string]TopicSpec, len(specs))
	for _, s := range specs {
		bySpec[s.Name] = s
	}
	var errs []error
	for _, ch := range changes {
		s := bySpec[ch.Topic]
		switch ch.Kind {
		case ChangeCreate:
			configs := make(map[string]*string, len(s.Configs))
			for k, v := range s.Configs {
				configs[k] = kadm.StringPtr(v)
			}
			_, err := adm.CreateTopic(ctx, s.Partitions, s.ReplicationFactor, configs, s.Name)
			if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
				errs = append(errs, fmt.Errorf("creating topic %s: %w", s.Name, err))
			}
		case ChangeAlterConfig:
			alter := make([]kadm.AlterConfig, 0, len(ch.Configs))
			for _, k := range slices.Sorted(maps.Keys(ch.Configs)) {
				alter = append(alter, kadm.AlterConfig{Op: kadm.SetConfig, Name: k, Value: kadm.StringPtr(ch.Configs[k])})
			}
			resps, err := adm.AlterTopicConfigs(ctx, alter, s.Name)
			if err == nil {
				for _, r := range resps {
					if r.Err != nil {
						err = errors.Join(err, r.Err)
					}
				}
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("altering configs of %s: %w", s.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

func validateSpecs(specs []TopicSpec) error {
	var errs []error
	seen := map[string]bool{}
	for i, s := range specs {
		switch {
		case s.Name == "":
			errs = append(errs, fmt.Errorf("topic spec %d: name is required", i))
		case seen[s.Name]:
			errs = append(errs, fmt.Errorf("topic spec %s: listed twice", s.Name))
		}
		seen[s.Name] = true
		if s.Partitions == 0 || s.Partitions < -1 {
			errs = append(errs, fmt.Errorf("topic spec %s: partitions must be positive or -1", s.Name))
		}
		if s.ReplicationFactor == 0 || s.ReplicationFactor < -1 {
			errs = append(errs, fmt.Errorf("topic spec %s: replication factor must be positive or -1", s.Name))
		}
	}
	return errors.Join(errs...)
}
