package smtpd

import (
	"context"
	"errors"
	"strconv"

	"github.com/emersion/go-smtp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
)

// Metric names.
const (
	// MetricSessions counts SMTP sessions that reached the greeting.
	MetricSessions = "mailpipe.smtp.sessions"
	// MetricRefusals counts refusals by reply code (attributes smtp.code, smtp.enhanced_code and
	// smtp.command: connect, MAIL, RCPT or DATA). Connection refusals (421 before the greeting)
	// count under connect.
	MetricRefusals = "mailpipe.smtp.refusals"
)

// WithMeterProvider sets where the server's metrics go (default: none).
func WithMeterProvider(mp metric.MeterProvider) Option {
	return optionFunc(func(o *options) { o.meters = mp })
}

type instruments struct {
	sessions metric.Int64Counter
	refusals metric.Int64Counter
}

func newInstruments(mp metric.MeterProvider) (*instruments, error) {
	if mp == nil {
		mp = metricnoop.NewMeterProvider()
	}
	m := mp.Meter("github.com/mailpipe/mailpipe/pkg/ingest/smtpd")
	sessions, err1 := m.Int64Counter(MetricSessions, metric.WithDescription("SMTP sessions that reached the greeting."), metric.WithUnit("{session}"))
	refusals, err2 := m.Int64Counter(MetricRefusals, metric.WithDescription("SMTP refusals by reply code and command."), metric.WithUnit("{reply}"))
	if err := errors.Join(err1, err2); err != nil {
		return nil, err
	}
	return &instruments{sessions: sessions, refusals: refusals}, nil
}

// refused counts err when it is an SMTP refusal and returns it unchanged.
func (in *instruments) refused(command string, err error) error {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		in.refusal(command, se.Code, se.EnhancedCode)
	}
	return err
}

func (in *instruments) refusal(command string, code int, enhanced smtp.EnhancedCode) {
	enh := ""
	if enhanced != (smtp.EnhancedCode{}) && enhanced != smtp.EnhancedCodeNotSet && enhanced != smtp.NoEnhancedCode {
		enh = strconv.Itoa(enhanced[0]) + "." + strconv.Itoa(enhanced[1]) + "." + strconv.Itoa(enhanced[2])
	}
	in.refusals.Add(context.Background(), 1, metric.WithAttributes(
		attribute.String("smtp.command", command), attribute.Int("smtp.code", code), attribute.String("smtp.enhanced_code", enh)))
}
