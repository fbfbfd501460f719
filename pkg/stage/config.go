package stage

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"runtime"
	"slices"
	"time"

	"github.com/mailpipe/mailpipe/pkg/kafka"
)

// Defaults applied by [Config.WithDefaults] to zero fields.
const (
	DefaultMaxAttempts     = 5
	DefaultInitialBackoff  = 200 * time.Millisecond
	DefaultMaxBackoff      = 5 * time.Second
	DefaultAttemptTimeout  = 30 * time.Second
	DefaultShutdownTimeout = 20 * time.Second
	DefaultMaxPollRecords  = 500
)

// Config configures a [Stage]. Zero fields take the defaults listed on each field (see
// [Config.WithDefaults]); Name, InputTopics and the handler are required. The env tags let a
// service nest it for package envconf; Name and InputTopics are normally set in code.
type Config struct {
	// Name is the stage name ("parser", "classifier", …): it goes into the DLQ stage header,
	// metric attributes and logs, and derives the group id. Lower-case letters, digits, '-', '_'.
	Name string
	// Group is the consumer group id. Default "mailpipe-" + Name.
	Group string `env:"GROUP" usage:"consumer group id (default mailpipe-<stage>)"`
	// InputTopics are consumed in the group.
	InputTopics []string
	// TransactionalID identifies this instance's transactional producer. It must be unique
	// among running instances (two instances with one id fence each other) and should be stable
	// across restarts of the same instance, so a restart fences and aborts what the crashed
	// incarnation left open instead of waiting for its transaction timeout.
	// Default Group + "-" + hostname (a pod name on Kubernetes). Where host names change on
	// restart (a Deployment rather than a StatefulSet), a crashed instance's open transaction
	// holds its partitions until TransactionTimeout expires; lower TransactionTimeout there.
	TransactionalID string `env:"TRANSACTIONAL_ID" usage:"transactional id, unique per instance (default <group>-<hostname>)"`
	// InstanceID enables static group membership (KIP-345): a restart with the same id within
	// SessionTimeout gets its partitions back without a rebalance. With it set, a graceful
	// shutdown does not leave the group (Kafka's rule for static members), so the partitions wait
	// for the restart or for SessionTimeout. Empty (default) means dynamic membership.
	InstanceID string `env:"INSTANCE_ID" usage:"static group membership id (optional)"`

	// MaxAttempts is the number of handler invocations per record, the first one included, before
	// the record is dead-lettered: 1 means "never retry". Default 5. A non-retryable error (see
	// failure.Retryable) or a panic dead-letters the record at once.
	MaxAttempts int `env:"MAX_ATTEMPTS" usage:"handler invocations per record before dead-lettering, first included"`
	// InitialBackoff and MaxBackoff bound the full-jitter exponential wait between attempts:
	// before retry n the stage sleeps uniformly in [0, min(MaxBackoff, InitialBackoff·2^(n-1))),
	// but at least the error's Retry-After, cut to MaxBackoff. Defaults 200ms and 5s.
	InitialBackoff time.Duration `env:"INITIAL_BACKOFF" usage:"first retry backoff ceiling"`
	MaxBackoff     time.Duration `env:"MAX_BACKOFF" usage:"maximum retry backoff"`
	// AttemptTimeout bounds one handler invocation (its context deadline). Default 30s.
	AttemptTimeout time.Duration `env:"ATTEMPT_TIMEOUT" usage:"deadline of one handler invocation"`
	// ShutdownTimeout bounds the graceful stop after Run's context is cancelled: the first half
	// is for in-flight records of the open batch, the rest for ending the transaction and leaving
	// the group. Default 20s.
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" usage:"bound on the graceful stop"`
	// DLQTopic receives dead letters. Default kafka.TopicDLQ. It must not be an input topic.
	DLQTopic string `env:"DLQ_TOPIC" usage:"dead-letter topic"`
	// MaxPollRecords caps the records handled in one transaction. Default 500. Smaller batches
	// mean less rework after a crash or rebalance; larger ones mean fewer transactions.
	MaxPollRecords int `env:"MAX_POLL_RECORDS" usage:"records per transaction, at most"`
	// Concurrency is how many partitions of one batch are handled in parallel; records of one
	// partition are always handled one after the other, in offset order. Default GOMAXPROCS.
	// With Concurrency > 1 the handler must be safe for concurrent use.
	Concurrency int `env:"CONCURRENCY" usage:"partitions handled in parallel"`

	// SessionTimeout, RebalanceTimeout and TransactionTimeout override franz-go's defaults
	// (45s, 60s, 40s) when non-zero. The transaction timeout starts at the first produce of a
	// batch, which the stage does only after every record of the batch was handled, so slow
	// handlers and retries do not count against it.
	SessionTimeout     time.Duration `env:"SESSION_TIMEOUT" usage:"group session timeout (default 45s)"`
	RebalanceTimeout   time.Duration `env:"REBALANCE_TIMEOUT" usage:"group rebalance timeout (default 60s)"`
	TransactionTimeout time.Duration `env:"TRANSACTION_TIMEOUT" usage:"transaction timeout (default 40s)"`
}

var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// WithDefaults returns c with every zero field set to its default. The default transactional id
// reads the host name.
func (c Config) WithDefaults() Config {
	if c.Group == "" && c.Name != "" {
		c.Group = "mailpipe-" + c.Name
	}
	if c.TransactionalID == "" && c.Group != "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "localhost"
		}
		c.TransactionalID = c.Group + "-" + host
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.InitialBackoff == 0 {
		c.InitialBackoff = DefaultInitialBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = max(DefaultMaxBackoff, c.InitialBackoff)
	}
	if c.AttemptTimeout == 0 {
		c.AttemptTimeout = DefaultAttemptTimeout
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.DLQTopic == "" {
		c.DLQTopic = kafka.TopicDLQ
	}
	if c.MaxPollRecords == 0 {
		c.MaxPollRecords = DefaultMaxPollRecords
	}
	if c.Concurrency == 0 {
		c.Concurrency = runtime.GOMAXPROCS(0)
	}
	return c
}

// Validate checks c after defaults were applied; the error joins every problem.
func (c Config) Validate() error {
	var errs []error
	if !validName.MatchString(c.Name) {
		errs = append(errs, fmt.Errorf("name %q must be lower-case letters, digits, '-' or '_'", c.Name))
	}
	if len(c.InputTopics) == 0 {
		errs = append(errs, errors.New("at least one input topic is required"))
	}
	if slices.Contains(c.InputTopics, "") {
		errs = append(errs, errors.New("input topics must not be empty strings"))
	}
	if c.Group == "" {
		errs = append(errs, errors.New("group is required"))
	}
	if c.TransactionalID == "" {
		errs = append(errs, errors.New("transactional id is required"))
	}
	if c.MaxAttempts < 1 {
		errs = append(errs, errors.New("max attempts must be at least 1"))
	}
	if c.InitialBackoff <= 0 {
		errs = append(errs, errors.New("initial backoff must be positive"))
	}
	if c.MaxBackoff < c.InitialBackoff {
		errs = append(errs, errors.New("max backoff must not be below the initial backoff"))
	}
	if c.AttemptTimeout <= 0 {
		errs = append(errs, errors.New("attempt timeout must be positive"))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, errors.New("shutdown timeout must be positive"))
	}
	if c.DLQTopic == "" {
		errs = append(errs, errors.New("dlq topic is required"))
	}
	if slices.Contains(c.InputTopics, c.DLQTopic) {
		errs = append(errs, fmt.Errorf("dlq topic %s must not be an input topic: a dead letter would be consumed again", c.DLQTopic))
	}
	if c.MaxPollRecords < 1 {
		errs = append(errs, errors.New("max poll records must be at least 1"))
	}
	if c.Concurrency < 1 {
		errs = append(errs, errors.New("concurrency must be at least 1"))
	}
	if c.SessionTimeout < 0 || c.RebalanceTimeout < 0 || c.TransactionTimeout < 0 {
		errs = append(errs, errors.New("session, rebalance and transaction timeouts must not be negative"))
	}
	return errors.Join(errs...)
}
