package pipeline

import (
	"context"

	"github.com/mailpipe/mailpipe/pkg/app"
	"github.com/mailpipe/mailpipe/pkg/envconf"
)

// EnvPrefix prefixes every service's environment variables.
const EnvPrefix = "MAILPIPE"

// Builder turns a loaded config and the shared components into a service's actors.
type Builder[C any] func(ctx context.Context, cfg C, d *Deps) ([]app.Actor, error)

type commoner interface{ common() Common }

func (c Common) common() Common { return c }

// Service is the whole body of a service main: load C from MAILPIPE_* (a config error exits
// with code 2), open the shared components, build the service, and run it with the admin
// server started first and stopped last, so /readyz turns 503 before intake stops.
func Service[C commoner](build Builder[C]) func(ctx context.Context, env app.Env) error {
	return func(ctx context.Context, env app.Env) error {
		cfg, err := envconf.Load[C](env, EnvPrefix)
		if err != nil {
			return err
		}
		d, err := Open(ctx, cfg.common(), env.Logger)
		if err != nil {
			return err
		}
		actors, err := build(ctx, cfg, d)
		if err != nil {
			return err
		}
		return app.Run(ctx, env.Logger, append(d.Actors(), actors...)...)
	}
}
