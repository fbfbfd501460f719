package app_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/app"
)

// recorder keeps the order of lifecycle events across actors.
type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) add(e string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// blocking returns an actor whose Run blocks until Stop is called and which records both.
func blocking(name string, rec *recorder, stopErr error) app.Actor {
	stop := make(chan struct{})
	var once sync.Once
	return app.Actor{
		Name: name,
		Run: func(ctx context.Context) error {
			select {
			case <-stop:
				return nil
			case <-ctx.Done():
				rec.add(name + " ctx cancelled")
				return ctx.Err()
			}
		},
		Stop: func(ctx context.Context) error {
			rec.add("stop " + name)
			once.Do(func() { close(stop) })
			return stopErr
		},
	}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestRunStopsInReverseOrder(t *testing.T) {
	boom := errors.New("boom")
	for _, tt := range []struct {
		name       string
		cancelCtx  bool
		failing    bool
		wantErr    error
		wantEvents []string
	}{
		{
			name:       "context cancelled",
			cancelCtx:  true,
			wantEvents: []string{"stop c", "stop b", "stop a"},
		},
		{
			name:       "one actor fails",
			failing:    true,
			wantErr:    boom,
			wantEvents: []string{"stop failing", "stop c", "stop b", "stop a"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// given three blocking actors, and optionally a fourth that fails
			rec := &recorder{}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			actors := []app.Actor{blocking("a", rec, nil), blocking("b", rec, nil), blocking("c", rec, nil)}
			if tt.failing {
				actors = append(actors, app.Actor{
					Name: "failing",
					Run:  func(context.Context) error { return boom },
					Stop: func(context.Context) error { rec.add("stop failing"); return nil },
				})
			}
			// when the context is cancelled or the failing actor returns
			if tt.cancelCtx {
				cancel()
			}
			err := app.Run(ctx, discard(), actors...)
			// then every actor is stopped, last started first, and the cause is returned
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Errorf("Run error = %v, want %v", err, tt.wantErr)
			}
			if got := rec.get(); !slices.Equal(got, tt.wantEvents) {
				t.Errorf("events = %q, want %q", got, tt.wantEvents)
			}
		})
	}
}

func TestRunActorReturningNilStopsOthers(t *testing.T) {
	rec := &recorder{}
	err := app.Run(t.Context(), discard(),
		blocking("a", rec, nil),
		app.Actor{Name: "oneshot", Run: func(context.Context) error { return nil }},
	)
	if err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if got, want := rec.get(), []string{"stop a"}; !slices.Equal(got, want) {
		t.Fatalf("events = %q, want %q", got, want)
	}
}

func TestRunJoinsStopErrors(t *testing.T) {
	stopErr := errors.New("flushing producer")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := app.Run(ctx, discard(), blocking("a", &recorder{}, stopErr))
	if !errors.Is(err, stopErr) {
		t.Fatalf("Run = %v, want it to wrap %v", err, stopErr)
	}
}

func TestRunNilStopCancelsRunContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	returned := false
	err := app.Run(ctx, discard(), app.Actor{
		Name: "ctxonly",
		Run: func(ctx context.Context) error {
			<-ctx.Done()
			returned = true
			return ctx.Err() // a Canceled after stop is not an error
		},
	})
	if err != nil || !returned {
		t.Fatalf("Run = %v, returned = %v; want nil, true", err, returned)
	}
}

func TestRunAbandonsStuckActor(t *testing.T) {
	// given an actor whose Stop does nothing, with a short deadline
	rec := &recorder{}
	stuck := app.Actor{
		Name: "stuck",
		Run: func(ctx context.Context) error {
			<-ctx.Done()
			rec.add("stuck ctx cancelled")
			return nil
		},
		Stop:        func(context.Context) error { return nil },
		StopTimeout: 50 * time.Millisecond,
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	// when the group stops
	start := time.Now()
	err := app.Run(ctx, discard(), blocking("a", rec, nil), stuck)
	// then the deadline is reported, its context cancelled, and the next actor still stopped
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Run = %v, want DeadlineExceeded", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("Run took %v, want about the stop timeout", time.Since(start))
	}
	if !slices.Contains(rec.get(), "stop a") {
		t.Errorf("events = %q, want a stopped after stuck", rec.get())
	}
}

func TestRunKeepsRunContextUntilStop(t *testing.T) {
	// The run context must outlive the parent's cancellation, so that an actor later in the
	// shutdown order can finish its work (e.g. flush) after intake stopped.
	ctx, cancel := context.WithCancel(t.Context())
	rec := &recorder{}
	producerStop := make(chan struct{})
	producer := app.Actor{
		Name: "producer",
		Run: func(runCtx context.Context) error {
			<-producerStop
			if runCtx.Err() != nil {
				rec.add("producer ctx cancelled before its stop")
			}
			return nil
		},
		Stop: func(context.Context) error { close(producerStop); return nil },
	}
	cancel()
	if err := app.Run(ctx, discard(), producer, blocking("intake", rec, nil)); err != nil {
		t.Fatal(err)
	}
	if got, want := rec.get(), []string{"stop intake"}; !slices.Equal(got, want) {
		t.Fatalf("events = %q, want %q", got, want)
	}
}

func TestRunNoActors(t *testing.T) {
	if err := app.Run(t.Context(), discard()); err != nil {
		t.Fatal(err)
	}
}

func TestHoldReleasesOnceAfterUsers(t *testing.T) {
	var order []string
	var mu sync.Mutex
	record := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		order = append(order, s)
	}
	releases := 0
	held := app.Hold("resource", func(context.Context) error {
		releases++
		record("release")
		return nil
	})
	stopped := make(chan struct{})
	user := app.Actor{
		Name: "user",
		Run:  func(context.Context) error { <-stopped; return nil },
		Stop: func(context.Context) error { record("user stopped"); close(stopped); return nil },
	}
	ctx, cancel := context.WithCancel(t.Context())
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	if err := app.Run(ctx, slog.New(slog.DiscardHandler), held, user); err != nil {
		t.Fatal(err)
	}
	_ = held.Stop(t.Context()) // a second Stop must not release again
	if releases != 1 {
		t.Fatalf("released %d times, want 1", releases)
	}
	if len(order) != 2 || order[0] != "user stopped" || order[1] != "release" {
		t.Fatalf("order %v, want the user stopped before the resource is released", order)
	}
}
