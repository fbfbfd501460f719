package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// DefaultStopTimeout bounds an actor's shutdown when its StopTimeout is zero. It fits inside the
// 30 s Kubernetes termination grace period with room for a few actors.
const DefaultStopTimeout = 10 * time.Second

// Actor is one long-lived component of a process (a consumer loop, an SMTP listener, the admin
// server), described as a run/stop pair for Run.
type Actor struct {
	// Name identifies the actor in logs and errors.
	Name string
	// Run does the actor's work and blocks until it is done or stopped. Its context is not
	// cancelled when the process is asked to stop: shutdown goes through Stop, in reverse start
	// order, so intake stops before the components it feeds. The context is cancelled only if the
	// actor is still running when its stop deadline passes (or Stop is nil, see below).
	// A Run that returns after being stopped should return nil (map http.ErrServerClosed and the
	// like); a context.Canceled it returns after being stopped is ignored.
	Run func(ctx context.Context) error
	// Stop asks Run to return, and releases what the actor holds. Its context carries the
	// shutdown deadline. Stop is called for every actor, including one whose Run already
	// returned, so it must be safe to call after Run returned. Nil means "stop by cancelling
	// Run's context".
	Stop func(ctx context.Context) error
	// StopTimeout bounds Stop plus the wait for Run to return; zero means DefaultStopTimeout.
	StopTimeout time.Duration
}

// Run starts every actor in order, each in its own goroutine, and waits until ctx is cancelled or
// any actor's Run returns. It then stops the actors in reverse start order: for each, it calls
// Stop with a context bounded by the actor's StopTimeout and waits, within that same deadline, for
// its Run to return. An actor still running at its deadline gets its Run context cancelled and is
// abandoned (logged), so one stuck component cannot hold the process forever.
//
// Run returns nil when ctx was cancelled and every actor stopped cleanly, or when the first actor
// to return did so with nil. Otherwise it returns the errors joined: the first actor's error (the
// cause), then Run and Stop errors seen while shutting down, each prefixed with the actor name.
func Run(ctx context.Context, log *slog.Logger, actors ...Actor) error {
	if len(actors) == 0 {
		return nil
	}
	type result struct {
		idx int
		err error
	}
	done := make(chan result, len(actors))
	finished := make([]chan struct{}, len(actors))
	runErrs := make([]error, len(actors))
	cancels := make([]context.CancelFunc, len(actors))
	// Detach cancellation but keep values (trace ids, loggers) from the parent.
	base := context.WithoutCancel(ctx)
	for i, a := range actors {
		runCtx, cancel := context.WithCancel(base)
		cancels[i] = cancel
		finished[i] = make(chan struct{})
		log.InfoContext(ctx, "starting actor", "actor", a.Name)
		go func() {
			err := a.Run(runCtx)
			runErrs[i] = err // read only after finished[i] is closed
			close(finished[i])
			done <- result{idx: i, err: err}
		}()
	}
	defer func() {
		for _, c := range cancels {
			c()
		}
	}()

	var errs []error
	cause := -1
	select {
	case <-ctx.Done():
		log.InfoContext(ctx, "stopping actors", "reason", context.Cause(ctx))
	case r := <-done:
		cause = r.idx
		a := actors[r.idx]
		if r.err != nil {
			errs = append(errs, fmt.Errorf("running %s: %w", a.Name, r.err))
			log.ErrorContext(ctx, "actor failed, stopping the others", "actor", a.Name, "err", r.err)
		} else {
			log.InfoContext(ctx, "actor returned, stopping the others", "actor", a.Name)
		}
	}

	for i := len(actors) - 1; i >= 0; i-- {
		if err := stopActor(base, log, actors[i], cancels[i], finished[i]); err != nil {
			errs = append(errs, err)
		}
	}
	// Collect errors of actors that returned during shutdown; the cause is already in errs.
	for i, a := range actors {
		select {
		case <-finished[i]:
		default:
			continue // abandoned, already reported by stopActor
		}
		if err := runErrs[i]; i != cause && err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, fmt.Errorf("running %s: %w", a.Name, err))
		}
	}
	return errors.Join(errs...)
}

// stopActor stops one actor within its deadline and reports Stop errors and a Run that did not
// return in time.
// ctx must not be cancelled by the shutdown itself (Run passes the detached base context): the
// deadline comes from the actor's StopTimeout.
func stopActor(ctx context.Context, log *slog.Logger, a Actor, cancel context.CancelFunc, finished <-chan struct{}) error {
	timeout := a.StopTimeout
	if timeout <= 0 {
		timeout = DefaultStopTimeout
	}
	stopCtx, stopCancel := context.WithTimeout(ctx, timeout)
	defer stopCancel()

	log.InfoContext(ctx, "stopping actor", "actor", a.Name, "timeout", timeout)
	var stopErr error
	if a.Stop != nil {
		if err := a.Stop(stopCtx); err != nil {
			stopErr = fmt.Errorf("stopping %s: %w", a.Name, err)
			log.ErrorContext(ctx, "stopping actor", "actor", a.Name, "err", err)
		}
	} else {
		cancel()
	}
	select {
	case <-finished:
		return stopErr
	case <-stopCtx.Done():
	}
	cancel()
	log.ErrorContext(ctx, "actor did not stop within its deadline, abandoning it", "actor", a.Name, "timeout", timeout)
	return errors.Join(stopErr, fmt.Errorf("stopping %s: %w", a.Name, context.DeadlineExceeded))
}

// Hold returns an actor that holds a resource for the life of the process: its Run waits until
// Stop, and Stop calls release once. Start it before the actors that use the resource, so it
// is stopped after them.
func Hold(name string, release func(ctx context.Context) error) Actor {
	done := make(chan struct{})
	var once sync.Once
	return Actor{
		Name: name,
		Run: func(ctx context.Context) error {
			select {
			case <-done:
			case <-ctx.Done():
			}
			return nil
		},
		Stop: func(ctx context.Context) error {
			var err error
			once.Do(func() {
				err = release(ctx)
				close(done)
			})
			return err
		},
	}
}
