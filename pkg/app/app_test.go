package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/app"
)

func TestExitCode(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, app.ExitOK},
		{"plain error", errors.New("boom"), app.ExitError},
		{"config error", app.ConfigError(errors.New("brokers is required")), app.ExitConfigError},
		{"wrapped config error", fmt.Errorf("loading: %w", app.ErrConfig), app.ExitConfigError},
		{"canceled", fmt.Errorf("consuming: %w", context.Canceled), app.ExitOK},
		{"config wins over canceled", errors.Join(context.Canceled, app.ErrConfig), app.ExitConfigError},
		{"deadline is an error", context.DeadlineExceeded, app.ExitError},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := app.ExitCode(tt.err); got != tt.want {
				t.Errorf("ExitCode(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}

func TestConfigErrorNil(t *testing.T) {
	if err := app.ConfigError(nil); err != nil {
		t.Fatalf("ConfigError(nil) = %v, want nil", err)
	}
}

func TestExec(t *testing.T) {
	for _, tt := range []struct {
		name     string
		level    string
		run      func(ctx context.Context, env app.Env) error
		want     int
		wantLogs []string // substrings expected on stderr
		noLogs   []string // substrings that must not appear
	}{
		{
			name: "ok",
			run: func(ctx context.Context, env app.Env) error {
				env.Logger.DebugContext(ctx, "hidden debug")
				env.Logger.InfoContext(ctx, "visible info")
				return nil
			},
			want:     app.ExitOK,
			wantLogs: []string{`"msg":"visible info"`},
			noLogs:   []string{"hidden debug"},
		},
		{
			name:  "debug level from env",
			level: "DEBUG",
			run: func(ctx context.Context, env app.Env) error {
				env.Logger.DebugContext(ctx, "now visible")
				return nil
			},
			want:     app.ExitOK,
			wantLogs: []string{`"level":"DEBUG"`, "now visible"},
		},
		{
			name:  "error level hides warnings",
			level: "error",
			run: func(ctx context.Context, env app.Env) error {
				env.Logger.WarnContext(ctx, "quiet warning")
				return errors.New("boom")
			},
			want:     app.ExitError,
			wantLogs: []string{`"err":"boom"`, `"exit_code":1`},
			noLogs:   []string{"quiet warning"},
		},
		{
			name: "config error",
			run: func(ctx context.Context, env app.Env) error {
				return app.ConfigError(errors.New("kafka: brokers is required"))
			},
			want:     app.ExitConfigError,
			wantLogs: []string{"brokers is required", `"exit_code":2`},
		},
		{
			name:  "invalid level is a config error and run is not called",
			level: "loud",
			run: func(ctx context.Context, env app.Env) error {
				panic("run must not be called")
			},
			want:     app.ExitConfigError,
			wantLogs: []string{app.LogLevelVar},
		},
		{
			name: "env passes args and stdout through",
			run: func(ctx context.Context, env app.Env) error {
				if len(env.Args) != 1 || env.Args[0] != "--validate" {
					return fmt.Errorf("args = %q", env.Args)
				}
				_, err := fmt.Fprint(env.Stdout, "config ok")
				return err
			},
			want: app.ExitOK,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			env := app.Env{
				Getenv: func(k string) string {
					if k == app.LogLevelVar {
						return tt.level
					}
					return ""
				},
				Args:   []string{"--validate"},
				Stdout: &stdout,
				Stderr: &stderr,
			}
			got := app.Exec(t.Context(), env, tt.run)
			if got != tt.want {
				t.Errorf("Exec = %d, want %d; stderr:\n%s", got, tt.want, stderr.String())
			}
			logs := stderr.String()
			for _, s := range tt.wantLogs {
				if !strings.Contains(logs, s) {
					t.Errorf("stderr lacks %q:\n%s", s, logs)
				}
			}
			for _, s := range tt.noLogs {
				if strings.Contains(logs, s) {
					t.Errorf("stderr has %q:\n%s", s, logs)
				}
			}
			for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
				if line != "" && !json.Valid([]byte(line)) {
					t.Errorf("log line is not JSON: %q", line)
				}
			}
		})
	}
}

func TestExecCancelledIsClean(t *testing.T) {
	// given a context that is cancelled, as by a signal
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	var stderr bytes.Buffer
	// when run returns the cancellation
	code := app.Exec(ctx, app.Env{Stderr: &stderr}, func(ctx context.Context, env app.Env) error {
		<-ctx.Done()
		return fmt.Errorf("consuming: %w", ctx.Err())
	})
	// then the exit is clean
	if code != app.ExitOK {
		t.Fatalf("Exec = %d, want %d; stderr:\n%s", code, app.ExitOK, stderr.String())
	}
}

func TestMainStopsOnSIGTERM(t *testing.T) {
	// given Main running a function that waits for its context
	started := make(chan struct{})
	codeCh := make(chan int, 1)
	go func() {
		codeCh <- app.Main(func(ctx context.Context, env app.Env) error {
			close(started)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(10 * time.Second):
				return errors.New("context was not cancelled by SIGTERM")
			}
		})
	}()
	<-started
	// when the process gets SIGTERM
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// then run's context is cancelled and the exit code is clean
	select {
	case code := <-codeCh:
		if code != app.ExitOK {
			t.Fatalf("Main = %d, want %d", code, app.ExitOK)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Main did not return")
	}
}
