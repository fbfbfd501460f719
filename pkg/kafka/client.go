package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kslog"
)

// NewClient builds a kgo client from cfg that logs through log (via kslog). extra options are
// applied after the connection options, so they may override them. The caller owns the client
// and must Close it.
func NewClient(cfg Config, log *slog.Logger, extra ...kgo.Opt) (*kgo.Client, error) {
	if log == nil {
		return nil, errors.New("logger is required")
	}
	opts, err := cfg.Opts()
	if err != nil {
		return nil, fmt.Errorf("building kafka options: %w", err)
	}
	// franz-go logs every metadata refresh and assignment at info; at our info level that
	// drowns the service's own lines, so its records pass only from warn up.
	opts = append(opts, kgo.WithLogger(kslog.New(slog.New(minLevel{log.Handler(), slog.LevelWarn}))))
	opts = append(opts, extra...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("creating kafka client: %w", err)
	}
	return cl, nil
}

// NewProducer builds the client ingress uses to write accepted mail: every record is
// acknowledged by all in-sync replicas (acks=all) and written idempotently (franz-go's default,
// which requires acks=all), so a retried produce never duplicates or reorders records within a
// partition. extra options are applied last; passing kgo.DisableIdempotentWrite or a weaker
// kgo.RequiredAcks defeats the guarantee ingress relies on ("250 only after acks=all").
func NewProducer(cfg Config, log *slog.Logger, extra ...kgo.Opt) (*kgo.Client, error) {
	opts := append([]kgo.Opt{kgo.RequiredAcks(kgo.AllISRAcks())}, extra...)
	return NewClient(cfg, log, opts...)
}

// NewAdmin builds an admin client (for [ApplyTopics] and similar). The caller must Close it,
// which closes the underlying kgo client.
func NewAdmin(cfg Config, log *slog.Logger, extra ...kgo.Opt) (*kadm.Client, error) {
	cl, err := NewClient(cfg, log, extra...)
	if err != nil {
		return nil, err
	}
	return kadm.NewClient(cl), nil
}

// minLevel drops records below min before they reach the wrapped handler.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(as), h.min}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.Handler.WithGroup(name), h.min}
}
