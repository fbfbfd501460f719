package sink_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/crm"
	"github.com/mailpipe/mailpipe/pkg/crm/crmtest"
	"github.com/mailpipe/mailpipe/pkg/dedupe"
	"github.com/mailpipe/mailpipe/pkg/dlq"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/kafka/kafkatest"
	"github.com/mailpipe/mailpipe/pkg/sink"
	"github.com/mailpipe/mailpipe/pkg/stage"
)

// The sink inside the real stage loop on kfake: a 503 is retried until the webhook takes the
// message, an undecodable record is dead-lettered with class schema, and every delivered message
// yields its mail.crm.v1 and mail.lake.v1 records in the same transaction as the offset commit.
func TestSinkInStage(t *testing.T) {
	brokers := kafkatest.NewCluster(t)
	for _, topic := range []string{kafka.TopicEnriched, kafka.TopicCRM, kafka.TopicLake, kafka.TopicDLQ} {
		kafkatest.CreateTopic(t, brokers, topic, 1)
	}
	e := newEnv(t)
	s, err := sink.New(e.codec, []crm.Connector{e.hook}, dedupe.NewMemory(), discard(), sink.WithLakeSalt(salt))
	if err != nil {
		t.Fatal(err)
	}

	// given two good messages around a poison record, and a webhook that answers 503 twice
	m1, m2 := crmtest.Message("stage-1"), crmtest.Message("stage-2")
	poison := &kgo.Record{Topic: kafka.TopicEnriched, Key: []byte("k"), Value: []byte{0, 0, 0, 0, 7, 1}}
	kafkatest.Produce(t, brokers, e.record(t, m1), poison, e.record(t, m2))
	e.srv.FailNext(2, 503, "")

	// when the stage runs
	st, err := stage.New(stage.Config{
		Name: "crm-sink", InputTopics: []string{kafka.TopicEnriched}, TransactionalID: "crm-sink-test",
		MaxAttempts: 4, InitialBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		AttemptTimeout: 5 * time.Second, ShutdownTimeout: 10 * time.Second,
	}, kafka.Config{Brokers: brokers}, s.Handle, discard())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 1)
	go func() { done <- st.Run(ctx) }()
	crmRecs := kafkatest.ConsumeAll(t, brokers, kafka.TopicCRM, 2, 30*time.Second)
	lakeRecs := kafkatest.ConsumeAll(t, brokers, kafka.TopicLake, 2, 30*time.Second)
	dead := kafkatest.ConsumeAll(t, brokers, kafka.TopicDLQ, 1, 30*time.Second)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("stage.Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("stage did not stop")
	}

	// then each message reached the webhook once, in order, with its outcome and lake row
	if got := e.srv.Deliveries(); len(got) != 2 || got[0].ID != m1.Message.ExternalID || got[1].ID != m2.Message.ExternalID {
		t.Fatalf("deliveries = %+v, want m1 then m2", got)
	}
	if n := e.srv.Requests(); n != 4 {
		t.Errorf("webhook requests = %d, want 2 failed + 2 delivered", n)
	}
	for i, want := range []*events.Enriched{m1, m2} {
		var o events.CRMOutcome
		if err := e.codec.Decode(t.Context(), kafka.TopicCRM, crmRecs[i].Value, &o); err != nil {
			t.Fatal(err)
		}
		if o.ExternalID != want.Message.ExternalID || o.Outcome != crm.OutcomeCreated || string(crmRecs[i].Key) != want.Message.ThreadKey {
			t.Errorf("crm record %d = %+v key %q", i, o, crmRecs[i].Key)
		}
		var row events.LakeRow
		if err := e.codec.Decode(t.Context(), kafka.TopicLake, lakeRecs[i].Value, &row); err != nil {
			t.Fatal(err)
		}
		if row.ID != want.Message.ID || string(lakeRecs[i].Key) != want.Message.ID || row.Outcome != crm.OutcomeCreated {
			t.Errorf("lake record %d = %+v key %q", i, row, lakeRecs[i].Key)
		}
	}

	// and the poison record is a dead letter with class schema and its bytes unchanged
	if len(dead) != 1 || !bytes.Equal(dead[0].Value, poison.Value) {
		t.Fatalf("dead letters = %d, want the poison record unchanged", len(dead))
	}
	class := ""
	for _, h := range dead[0].Headers {
		if h.Key == dlq.HeaderErrorClass {
			class = string(h.Value)
		}
	}
	if class != "schema" {
		t.Errorf("dead letter class = %q, want schema", class)
	}
}
