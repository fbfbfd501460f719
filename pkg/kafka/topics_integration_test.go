package kafka_test

import (
	"log/slog"
	"testing"

	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/kafka/kafkatest"
)

// TestApplyTopicsRealBroker applies a spec table shaped like TopicSpecs (unique names, so runs on
// a shared broker do not interfere) to the real broker twice and checks the second plan is empty.
func TestApplyTopicsRealBroker(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	adm, err := kafka.NewAdmin(kafka.Config{Brokers: brokers}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(adm.Close)
	var specs []kafka.TopicSpec
	for _, s := range kafka.TopicSpecs(kafka.TopicsConfig{Partitions: 2}) {
		s.Name = kafkatest.TopicName(t, s.Name)
		specs = append(specs, s)
	}
	ctx := t.Context()
	if err := kafka.ApplyTopics(ctx, adm, specs); err != nil {
		t.Fatalf("first apply: %v", err)
	}
	if err := kafka.ApplyTopics(ctx, adm, specs); err != nil {
		t.Fatalf("second apply: %v", err)
	}
	plan, err := kafka.PlanTopics(ctx, adm, specs)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan) != 0 {
		t.Fatalf("plan after apply = %+v, want nothing left to do", plan)
	}
	t.Cleanup(func() {
		names := make([]string, len(specs))
		for i, s := range specs {
			names[i] = s.Name
		}
		if _, err := adm.DeleteTopics(t.Context(), names...); err != nil {
			t.Logf("deleting test topics: %v", err)
		}
	})
}
