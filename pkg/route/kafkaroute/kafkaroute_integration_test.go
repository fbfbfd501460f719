package kafkaroute_test

import (
	"testing"

	"github.com/mailpipe/mailpipe/pkg/kafka/kafkatest"
)

// The same contracts as the kfake tests, against the real broker ($MAILPIPE_TEST_KAFKA_BROKERS):
// offsets, end-offset listing and read_committed behave as Kafka itself implements them.

func TestFollowerLoadsAndFollowsIntegration(t *testing.T) {
	runFollowerLoadsAndFollows(t, kafkatest.Brokers(t))
}

func TestStoreIntegration(t *testing.T) {
	runStore(t, kafkatest.Brokers(t))
}
