package pipeline

import (
	"context"

	"github.com/mailpipe/mailpipe/pkg/app"
	"github.com/mailpipe/mailpipe/pkg/envconf"
	"github.com/mailpipe/mailpipe/pkg/telemetry"
)

// EnvPrefix prefixes every service's environment variables.
const EnvPrefix = "MAILPIPE"

// Builder turns a loaded config and the shared components into a service's actors.
type Builder[C any] func(ctx context.Context, cfg C, d *Deps) ([]app.Actor, error)

type commoner interface{ common() Common }

func (c Common) common() Common { return c }

// Service is the whole body of a service main: load C from MAILPIPE_* (a config error exits
// with code 2), open the shared components, build the service, and run it with the admin
// server started first and stopped last, so /readyz turns 503 before intake stops. name is the
// service.name of its spans and metrics; tracing follows the process's OTEL_* variables.
func Service[C commoner](name string, build Builder[C]) func(ctx context.Context, env app.Env) error {
	return func(ctx context.Context, env app.Env) error {
		cfg, err := envconf.Load[C](env, EnvPrefix)
		if err != nil {
			return err
		}
		d, err := Open(ctx, cfg.common(), env.Logger, WithServiceName(name), WithTelemetry(telemetry.WithGetenv(env.Getenv)))
		if err != nil {
			return err
		}
		actors, err := build(ctx, cfg, d)
		if err != nil {
			return err
		}
		return app.Run(ctx, d.Log, append(d.Actors(), actors...)...)
	}
}
