package ingest_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/ingest"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/kafka/kafkatest"
)

// TestAcceptWithKafkaClient runs Accept over a real franz-go producer (kafka.NewProducer) against
// an in-process kfake cluster, so the Producer interface is exercised with *kgo.Client itself.
func TestAcceptWithKafkaClient(t *testing.T) {
	brokers := kafkatest.NewCluster(t)
	topic := kafkatest.TopicName(t, "mail.raw")
	kafkatest.CreateTopic(t, brokers, topic, 3)
	log := slog.New(slog.DiscardHandler)
	cl, err := kafka.NewProducer(kafka.Config{Brokers: brokers}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	in := newIngester(t, ingest.Config{Topic: topic}, ingest.Options{Producer: cl, Logger: log})

	// given two messages of one conversation
	reply := message("Message-ID: <m2@example.org>\nReferences: <Root.1@Example.ORG>\n", "re\r\n")
	var ids []string
	for _, raw := range [][]byte{plain, reply} {
		res, err := in.Accept(t.Context(), smtpEnv("a@in.example.com"), raw)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.ID)
	}

	// then both are on the topic, keyed by the root, on one partition, in order
	recs := kafkatest.ConsumeAll(t, brokers, topic, 2, 10*time.Second)
	if len(recs) != 2 {
		t.Fatalf("consumed %d records, want 2", len(recs))
	}
	for i, r := range recs {
		got := decode(t, codec(t), r)
		if got.ID != ids[i] || string(r.Key) != "Root.1@example.org" {
			t.Errorf("record %d: id %s key %q, want id %s key Root.1@example.org", i, got.ID, r.Key, ids[i])
		}
	}
	if recs[0].Partition != recs[1].Partition {
		t.Errorf("partitions %d and %d, want one", recs[0].Partition, recs[1].Partition)
	}
}

func TestAcceptFailsWhenBrokerDoesNotAcknowledge(t *testing.T) {
	brokers := kafkatest.NewCluster(t) // no topics, no auto-creation: nothing is acknowledged
	log := slog.New(slog.DiscardHandler)
	cl, err := kafka.NewProducer(kafka.Config{Brokers: brokers}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	in := newIngester(t, ingest.Config{Topic: kafkatest.TopicName(t, "missing")}, ingest.Options{Producer: cl, Logger: log})

	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	res, err := in.Accept(ctx, events.Envelope{RcptTo: []string{"a@in.example.com"}, Source: "http"}, plain)
	if err == nil {
		t.Fatalf("Accept() = %+v, want an error", res)
	}
	if !matchErr(err, errTemporary) {
		t.Errorf("error %v is permanent, want temporary", err)
	}
}
