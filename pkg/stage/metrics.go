package stage

import (
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/mailpipe/mailpipe/pkg/failure"
)

// Metric names. Every instrument carries the attribute stage=<Config.Name>.
const (
	// MetricRecordsConsumed counts records polled from the input topics (attribute topic).
	MetricRecordsConsumed = "mailpipe.stage.records.consumed"
	// MetricRecordsProduced counts output records in committed transactions (attribute topic),
	// dead letters included.
	MetricRecordsProduced = "mailpipe.stage.records.produced"
	// MetricDeadLetters counts records turned into dead letters (attribute error.class). A dead
	// letter in an aborted transaction is counted again when the record is redelivered.
	MetricDeadLetters = "mailpipe.stage.dead_letters"
	// MetricTransactions counts ended transactions (attribute outcome=committed|aborted).
	MetricTransactions = "mailpipe.stage.transactions"
	// MetricBatchDuration is the time from poll to end of transaction, in seconds.
	MetricBatchDuration = "mailpipe.stage.batch.duration"
	// MetricHandlerRecordsIn counts handler invocations (attempts), attribute topic.
	MetricHandlerRecordsIn = "mailpipe.stage.handler.records_in"
	// MetricHandlerRecordsOut counts records returned by successful attempts.
	MetricHandlerRecordsOut = "mailpipe.stage.handler.records_out"
	// MetricHandlerDuration is the duration of one attempt in seconds (attributes outcome=ok|error
	// and, on error, error.class).
	MetricHandlerDuration = "mailpipe.stage.handler.duration"
	// MetricHandlerErrors counts failed attempts by error.class.
	MetricHandlerErrors = "mailpipe.stage.handler.errors"
	// MetricConsumerLag is the stage's consumer lag per input partition (attributes topic,
	// partition): committed end offset (the last stable offset) minus the group's committed
	// offset, read from the broker at each collection.
	MetricConsumerLag = "mailpipe.stage.consumer.lag"
)

type instruments struct {
	stage attribute.KeyValue
	meter metric.Meter
	lag   metric.Int64ObservableGauge

	consumed        metric.Int64Counter
	produced        metric.Int64Counter
	deadLettered    metric.Int64Counter
	transactions    metric.Int64Counter
	batchDuration   metric.Float64Histogram
	handlerIn       metric.Int64Counter
	handlerOut      metric.Int64Counter
	handlerDuration metric.Float64Histogram
	handlerErrors   metric.Int64Counter
}

func newInstruments(mp metric.MeterProvider, stage string) (*instruments, error) {
	m := mp.Meter("github.com/mailpipe/mailpipe/pkg/stage")
	in := &instruments{stage: attribute.String("stage", stage), meter: m}
	var errs []error
	counter := func(name, desc, unit string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithDescription(desc), metric.WithUnit(unit))
		errs = append(errs, err)
		return c
	}
	histogram := func(name, desc string) metric.Float64Histogram {
		h, err := m.Float64Histogram(name, metric.WithDescription(desc), metric.WithUnit("s"))
		errs = append(errs, err)
		return h
	}
	in.consumed = counter(MetricRecordsConsumed, "Records polled from the input topics.", "{record}")
	in.produced = counter(MetricRecordsProduced, "Output records in committed transactions, dead letters included.", "{record}")
	in.deadLettered = counter(MetricDeadLetters, "Records turned into dead letters.", "{record}")
	in.transactions = counter(MetricTransactions, "Ended transactions by outcome.", "{transaction}")
	in.batchDuration = histogram(MetricBatchDuration, "Time from poll to end of transaction.")
	in.handlerIn = counter(MetricHandlerRecordsIn, "Handler invocations (attempts).", "{record}")
	in.handlerOut = counter(MetricHandlerRecordsOut, "Records returned by successful attempts.", "{record}")
	in.handlerDuration = histogram(MetricHandlerDuration, "Duration of one handler attempt.")
	in.handlerErrors = counter(MetricHandlerErrors, "Failed handler attempts by error class.", "{error}")
	lag, err := m.Int64ObservableGauge(MetricConsumerLag, metric.WithDescription("Records of the input partitions not yet committed by the stage's group."), metric.WithUnit("{record}"))
	errs = append(errs, err)
	in.lag = lag
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return in, nil
}

// attrs returns the measurement option with the stage attribute plus kv.
func (in *instruments) attrs(kv ...attribute.KeyValue) metric.MeasurementOption {
	return metric.WithAttributes(append([]attribute.KeyValue{in.stage}, kv...)...)
}

func attrTopic(t string) attribute.KeyValue         { return attribute.String("topic", t) }
func attrClass(c failure.Class) attribute.KeyValue  { return attribute.String("error.class", string(c)) }
func attrOutcome(outcome string) attribute.KeyValue { return attribute.String("outcome", outcome) }
