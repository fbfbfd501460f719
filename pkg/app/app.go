// Package app runs a mailpipe process: it gives a thin main a signal-cancelled context, a JSON
// slog logger and an exit code (Main), and runs the process's long-lived components as an actor
// group that shuts down in reverse start order (Run).
//
// A service main stays this small:
//
//	func main() { os.Exit(app.Main(run)) }
//
//	func run(ctx context.Context, env app.Env) error {
//		cfg, err := envconf.Load[parse.Config](env, "MAILPIPE")
//		if err != nil {
//			return err // envconf marks it as a config error: exit code 2
//		}
//		...
//		return app.Run(ctx, env.Logger, stage.Actor(st), srv.Actor())
//	}
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Exit codes returned by Main and Exec.
const (
	ExitOK          = 0 // run returned nil, or the process was asked to stop by a signal
	ExitError       = 1 // run returned any other error
	ExitConfigError = 2 // run returned an error wrapping ErrConfig
)

// LogLevelVar is the environment variable holding the log level: debug, info (the default), warn,
// error, or an offset such as "info+2" (see slog.Level.UnmarshalText).
const LogLevelVar = "MAILPIPE_LOG_LEVEL"

// ErrConfig marks an error as a configuration problem: Main maps any error wrapping it to exit
// code 2, so an orchestrator can tell "fix the config" from "crashed". envconf.Load wraps its
// errors with it; a main wraps its own checks with ConfigError.
var ErrConfig = errors.New("invalid configuration")

// ConfigError wraps err so that errors.Is(err, ErrConfig) holds. It returns nil for a nil err.
func ConfigError(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrConfig) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrConfig, err)
}

// Env is what a process gets from its surroundings. Passing it explicitly, instead of reading
// os.Getenv and os.Args deep inside packages, keeps config loading testable and free of globals.
type Env struct {
	// Getenv returns the value of an environment variable, or "" when it is unset.
	Getenv func(key string) string
	// Args are the command-line arguments without the program name (os.Args[1:]).
	Args []string
	// Stdout and Stderr are the process's output streams; the logger writes to Stderr.
	Stdout io.Writer
	Stderr io.Writer
	// Logger is the process logger: JSON to Stderr at the level from MAILPIPE_LOG_LEVEL.
	Logger *slog.Logger
}

// OSEnv returns the Env of the running process, without a Logger (Exec builds it).
func OSEnv() Env {
	return Env{Getenv: os.Getenv, Args: os.Args[1:], Stdout: os.Stdout, Stderr: os.Stderr}
}

// Main runs run in the current process and returns the exit code for os.Exit. The context passed
// to run is cancelled on the first SIGINT or SIGTERM; a second signal kills the process with the
// default behaviour, so a stuck shutdown can still be interrupted.
func Main(run func(ctx context.Context, env Env) error) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // restore default signal handling: a second signal terminates at once
	}()
	return Exec(ctx, OSEnv(), run)
}

// Exec is Main without the process wiring: it runs run with ctx and env and maps the result to an
// exit code. When env.Logger is nil, Exec builds the JSON logger on env.Stderr from
// MAILPIPE_LOG_LEVEL; an invalid level is a config error. An error from run is logged once, with
// its exit code. When ctx was cancelled (a signal) and run returns an error wrapping
// context.Canceled, that is a clean shutdown and the code is ExitOK.
func Exec(ctx context.Context, env Env, run func(ctx context.Context, env Env) error) int {
	if env.Stderr == nil {
		env.Stderr = io.Discard
	}
	if env.Stdout == nil {
		env.Stdout = io.Discard
	}
	if env.Getenv == nil {
		env.Getenv = func(string) string { return "" }
	}
	if env.Logger == nil {
		log, err := NewLogger(env.Stderr, env.Getenv(LogLevelVar))
		if err != nil {
			// No logger yet: fall back to an info-level one so the failure is still JSON.
			log, _ = NewLogger(env.Stderr, "")
			log.ErrorContext(ctx, "exiting", "err", err, "exit_code", ExitConfigError)
			return ExitConfigError
		}
		env.Logger = log
	}
	err := run(ctx, env)
	code := ExitCode(err)
	if code == ExitOK && err != nil {
		env.Logger.InfoContext(ctx, "stopped by signal")
		return code
	}
	if err != nil {
		env.Logger.ErrorContext(ctx, "exiting", "err", err, "exit_code", code)
	}
	return code
}

// ExitCode maps an error returned by a run function to a process exit code: nil and
// context.Canceled give ExitOK, errors wrapping ErrConfig give ExitConfigError, all others
// ExitError. Config errors win over cancellation when both are wrapped.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, ErrConfig):
		return ExitConfigError
	case errors.Is(err, context.Canceled):
		return ExitOK
	default:
		return ExitError
	}
}

// NewLogger returns a JSON slog logger writing to w at the given level ("" means info). The level
// accepts what slog.Level.UnmarshalText does, case-insensitively: debug, info, warn, error and
// offsets such as "warn+1". An unknown level is an error wrapping ErrConfig.
func NewLogger(w io.Writer, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if s := strings.TrimSpace(level); s != "" {
		if err := lvl.UnmarshalText([]byte(s)); err != nil {
			return nil, ConfigError(fmt.Errorf("parsing %s=%q: %w", LogLevelVar, level, err))
		}
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lvl})), nil
}
