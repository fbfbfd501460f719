package kafka_test

import (
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/kafka/kafkatest"
)

func TestTopicSpecs(t *testing.T) {
	specs := kafka.TopicSpecs(kafka.TopicsConfig{Partitions: 3, Retention: time.Hour})
	byName := map[string]kafka.TopicSpec{}
	for _, s := range specs {
		byName[s.Name] = s
	}
	for _, name := range []string{
		kafka.TopicRaw, kafka.TopicParsed, kafka.TopicClassified, kafka.TopicEnriched, kafka.TopicCRM,
		kafka.TopicLake, kafka.TopicDLQ, kafka.TopicRoutes, kafka.TopicDLQAudit,
	} {
		s, ok := byName[name]
		if !ok {
			t.Errorf("no spec for %s", name)
			continue
		}
		if s.Partitions != 3 || s.ReplicationFactor != -1 {
			t.Errorf("%s: partitions %d rf %d, want 3 and -1", name, s.Partitions, s.ReplicationFactor)
		}
	}
	for _, tt := range []struct {
		topic, key, want string
	}{
		{kafka.TopicRoutes, "cleanup.policy", "compact"},
		{kafka.TopicRaw, "cleanup.policy", "delete"},
		{kafka.TopicRaw, "retention.ms", "3600000"},
		{kafka.TopicDLQ, "retention.ms", "2592000000"},
		{kafka.TopicDLQAudit, "retention.ms", "2592000000"},
	} {
		if got := byName[tt.topic].Configs[tt.key]; got != tt.want {
			t.Errorf("%s %s = %q, want %q", tt.topic, tt.key, got, tt.want)
		}
	}
	if _, ok := byName[kafka.TopicRoutes].Configs["retention.ms"]; ok {
		t.Error("the compacted routes topic must not carry a time retention")
	}
	if got := kafka.TopicSpecs(kafka.TopicsConfig{Retention: -1})[0].Configs["retention.ms"]; got != "-1" {
		t.Errorf("negative retention = %q, want -1 (forever)", got)
	}
	if got := kafka.TopicSpecs(kafka.TopicsConfig{})[0].Partitions; got != kafka.DefaultPartitions {
		t.Errorf("default partitions = %d, want %d", got, kafka.DefaultPartitions)
	}
}

func TestApplyTopics(t *testing.T) {
	// given a cluster that already has one topic with a drifted config and another partition count
	brokers := kafkatest.NewCluster(t)
	ctx := t.Context()
	adm, err := kafka.NewAdmin(kafka.Config{Brokers: brokers}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(adm.Close)
	if _, err := adm.CreateTopic(ctx, 2, 1, map[string]*string{"retention.ms": kadm.StringPtr("1000")}, kafka.TopicRaw); err != nil {
		t.Fatal(err)
	}
	specs := kafka.TopicSpecs(kafka.TopicsConfig{Partitions: 4})

	// when planning, then every other topic is to be created and raw is altered, not resized
	plan, err := kafka.PlanTopics(ctx, adm, specs)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string][]kafka.ChangeKind{}
	for _, ch := range plan {
		kinds[ch.Topic] = append(kinds[ch.Topic], ch.Kind)
	}
	if got := kinds[kafka.TopicRaw]; len(got) != 2 || got[0] != kafka.ChangePartitions || got[1] != kafka.ChangeAlterConfig {
		t.Fatalf("raw topic changes = %v, want partitions-differ and alter-config", got)
	}
	if got := kinds[kafka.TopicRoutes]; len(got) != 1 || got[0] != kafka.ChangeCreate {
		t.Fatalf("routes topic changes = %v, want create", got)
	}

	// when applying twice
	for i := range 2 {
		if err := kafka.ApplyTopics(ctx, adm, specs); err != nil {
			t.Fatalf("apply %d: %v", i, err)
		}
	}

	// then only the partition difference is left, and the configs hold
	plan, err = kafka.PlanTopics(ctx, adm, specs)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan) != 1 || plan[0].Kind != kafka.ChangePartitions || plan[0].Topic != kafka.TopicRaw {
		t.Fatalf("plan after apply = %+v, want only the raw partition difference", plan)
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, kafka.TopicRoutes, kafka.TopicRaw)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]string{
		kafka.TopicRoutes: {"cleanup.policy": "compact"},
		kafka.TopicRaw:    {"retention.ms": "604800000", "cleanup.policy": "delete"},
	}
	for _, rc := range rcs {
		for _, c := range rc.Configs {
			if w, ok := want[rc.Name][c.Key]; ok && c.MaybeValue() != w {
				t.Errorf("%s %s = %q, want %q", rc.Name, c.Key, c.MaybeValue(), w)
			}
		}
	}
	details, err := adm.ListTopics(ctx, kafka.TopicDLQ)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(details[kafka.TopicDLQ].Partitions); n != 4 {
		t.Fatalf("created dlq topic has %d partitions, want 4", n)
	}
}

func TestApplyTopicsRejectsBadSpecs(t *testing.T) {
	brokers := kafkatest.NewCluster(t)
	adm := kadm.NewClient(kafkatest.Client(t, brokers))
	for _, specs := range [][]kafka.TopicSpec{
		{{Name: "", Partitions: 1, ReplicationFactor: 1}},
		{{Name: "a", Partitions: 0, ReplicationFactor: 1}},
		{{Name: "a", Partitions: 1, ReplicationFactor: 0}},
		{{Name: "a", Partitions: 1, ReplicationFactor: 1}, {Name: "a", Partitions: 1, ReplicationFactor: 1}},
	} {
		if err := kafka.ApplyTopics(t.Context(), adm, specs); err == nil {
			t.Errorf("ApplyTopics accepted %+v", specs)
		}
	}
}

func TestNewProducer(t *testing.T) {
	brokers := kafkatest.NewCluster(t)
	topic := kafkatest.TopicName(t, "test")
	kafkatest.CreateTopic(t, brokers, topic, 2)

	if _, err := kafka.NewProducer(kafka.Config{Brokers: brokers}, nil); err == nil {
		t.Fatal("NewProducer accepted a nil logger")
	}
	cl, err := kafka.NewProducer(kafka.Config{Brokers: brokers}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(t.Context(), &kgo.Record{Topic: topic, Key: []byte("k"), Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	got := kafkatest.ConsumeAll(t, brokers, topic, 1, 10*time.Second)
	if string(got[0].Value) != "v" {
		t.Fatalf("consumed %q", got[0].Value)
	}
	// acks=all plus idempotence: the producer id is assigned by the broker.
	if id, _, err := cl.ProducerID(t.Context()); err != nil || id < 0 {
		t.Fatalf("producer id = %d, %v; want an idempotent producer", id, err)
	}
}
