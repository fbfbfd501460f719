// Package kafkatest provides Kafka fixtures for tests: the real broker from the environment
// ([Brokers]), an in-process kfake cluster ([NewCluster]), unique topic names, topic creation,
// producing, and reading a topic back read_committed ([ConsumeAll]).
//
// Every helper takes testing.TB and fails the test on error, so call sites stay one line. The
// helpers work the same against kfake and a real broker, which lets one test body run on both.
package kafkatest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// EnvBrokers names the environment variable holding the real test broker's bootstrap list
// (comma-separated). scripts/kafka-up.sh prints the value to use (127.0.0.1:19092).
const EnvBrokers = "MAILPIPE_TEST_KAFKA_BROKERS"

// Brokers returns the real broker(s) to test against, from $MAILPIPE_TEST_KAFKA_BROKERS.
// Under `go test -short` it skips the test (unit runs need no services). Otherwise a missing
// variable fails the test: a missing service is a failure, never a silent skip.
func Brokers(t testing.TB) []string {
	t.Helper()
	if testing.Short() {
		t.Skipf("needs a real Kafka broker ($%s); skipped under -short", EnvBrokers)
	}
	v := strings.TrimSpace(os.Getenv(EnvBrokers))
	if v == "" {
		t.Fatalf("$%s is not set: start scripts/kafka-up.sh and set MAILPIPE_TEST_KAFKA_BROKERS to the address it prints (127.0.0.1:19092)", EnvBrokers)
	}
	var out []string
	for _, b := range strings.Split(v, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// NewCluster starts an in-process kfake cluster for the test and returns its seed addresses.
// The cluster is closed by t.Cleanup. opts are passed to kfake.NewCluster; by default the
// cluster has one broker and no topics.
func NewCluster(t testing.TB, opts ...kfake.Opt) []string {
	t.Helper()
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatalf("starting kfake cluster: %v", err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

var unsafeTopicChars = regexp.MustCompile(`[^a-zA-Z0-9._-]+`)

// TopicName returns a topic name unique to this test run: "<prefix>.<test name>.<random>", cut
// to Kafka's 249-character limit. Tests on a shared broker use it so they never see each other's
// records or a previous run's.
func TopicName(t testing.TB, prefix string) string {
	t.Helper()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("reading random bytes: %v", err)
	}
	name := unsafeTopicChars.ReplaceAllString(t.Name(), "_")
	if len(name) > 150 {
		name = name[:150]
	}
	return prefix + "." + name + "." + hex.EncodeToString(b[:])
}

// Client returns a kgo client for brokers, closed by t.Cleanup. opts are appended.
func Client(t testing.TB, brokers []string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, opts...)...)
	if err != nil {
		t.Fatalf("creating kafka client: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// CreateTopic creates topic with the given partition count and the broker's default replication
// factor, and waits until its metadata is visible. An existing topic is not an error.
func CreateTopic(t testing.TB, brokers []string, name string, partitions int32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	adm := kadm.NewClient(Client(t, brokers))
	if _, err := adm.CreateTopic(ctx, partitions, -1, nil, name); err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		t.Fatalf("creating topic %s: %v", name, err)
	}
	for {
		// WithAuthorizedOps bypasses the client's metadata cache, which would keep answering
		// "unknown topic" for a few seconds.
		details, err := adm.ListTopics(kadm.WithAuthorizedOps(ctx), name)
		if err == nil {
			if d, ok := details[name]; ok && d.Err == nil && len(d.Partitions) == int(partitions) && allLed(d) {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("topic %s did not become ready: %v", name, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func allLed(d kadm.TopicDetail) bool {
	for _, p := range d.Partitions {
		if p.Leader < 0 || p.Err != nil {
			return false
		}
	}
	return true
}

// Produce writes records synchronously (acks=all, idempotent) and fails the test on any error.
// Records without a Topic fail.
func Produce(t testing.TB, brokers []string, records ...*kgo.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cl := Client(t, brokers)
	if err := cl.ProduceSync(ctx, records...).FirstErr(); err != nil {
		t.Fatalf("producing %d records: %v", len(records), err)
	}
}

// ConsumeAll reads topic from the start with read_committed isolation (outside any group) until
// it has at least n records, and returns every record received by then, in the order received
// (per-partition order is kept); that can be more than n if the last poll brought more. It fails
// the test if fewer than n arrive within timeout.
func ConsumeAll(t testing.TB, brokers []string, topic string, n int, timeout time.Duration) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	cl := Client(t, brokers,
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	)
	out := make([]*kgo.Record, 0, n)
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consuming %s: got %d of %d records within %v", topic, len(out), n, timeout)
		}
		fs.EachError(func(topic string, p int32, err error) {
			t.Logf("fetching %s[%d]: %v", topic, p, err)
		})
		out = append(out, fs.Records()...)
	}
	return out
}
