package kafkatest_test

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/kafka/kafkatest"
)

func TestTopicName(t *testing.T) {
	a, b := kafkatest.TopicName(t, "mail.raw.v1"), kafkatest.TopicName(t, "mail.raw.v1")
	if a == b {
		t.Fatalf("two calls returned the same name %q", a)
	}
	if !strings.HasPrefix(a, "mail.raw.v1.TestTopicName.") {
		t.Fatalf("name %q does not start with prefix and test name", a)
	}
	valid := regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)
	t.Run("sub test/with spaces and ünïcode", func(t *testing.T) {
		if n := kafkatest.TopicName(t, "x"); !valid.MatchString(n) {
			t.Fatalf("%q is not a valid topic name", n)
		}
	})
}

func TestProduceAndConsumeAll(t *testing.T) {
	brokers := kafkatest.NewCluster(t)
	topic := kafkatest.TopicName(t, "test")
	kafkatest.CreateTopic(t, brokers, topic, 3)
	var recs []*kgo.Record
	for i := range 30 {
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte{byte('a' + i%3)}, Value: []byte{byte(i)}})
	}
	kafkatest.Produce(t, brokers, recs...)
	got := kafkatest.ConsumeAll(t, brokers, topic, 30, 10*time.Second)
	if len(got) != 30 {
		t.Fatalf("got %d records, want 30", len(got))
	}
	last := map[string]int{}
	for _, r := range got {
		if prev, ok := last[string(r.Key)]; ok && int(r.Value[0]) < prev {
			t.Fatalf("key %s out of order", r.Key)
		}
		last[string(r.Key)] = int(r.Value[0])
	}
}
