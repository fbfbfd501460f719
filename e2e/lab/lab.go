// Package lab is mailpipe's reliability lab (docs/reliability.md, the plan in RELIABILITY.md):
// it runs the five services as OS processes on a Kafka broker, a redis-server and a CRM contract
// server of its own, sends ledgered mail over SMTP while injecting faults (signals to the
// processes it started, broker and Redis restarts, poison pills, CRM storms), and checks the
// outcome with an oracle that drains every topic read_committed.
//
// The services' input and output topic names are fixed (only the DLQ topic, group ids and
// transactional ids can be set), so every scenario gets its own broker on a free port: that
// isolates the runs from each other and from other tests, and lets a scenario restart the
// broker.
package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Domain is the recipient domain the lab's ingress accepts.
const Domain = "in.example.com"

// ServiceNames are the pipeline's services in flow order.
var ServiceNames = []string{"ingress", "parser", "classifier", "enricher", "crm-sink"}

// RepoRoot finds the repository root (the directory holding go.work) from the working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.work not found above the working directory")
		}
		dir = parent
	}
}

// Build compiles the services and the mailpipe CLI into dir (with the race detector when race).
func Build(ctx context.Context, repo, dir string, race bool) (map[string]string, error) {
	out := map[string]string{}
	for _, n := range append([]string{"mailpipe"}, ServiceNames...) {
		bin := filepath.Join(dir, n)
		args := []string{"build"}
		if race {
			args = append(args, "-race")
		}
		args = append(args, "-o", bin, "github.com/mailpipe/mailpipe/services/"+n)
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = filepath.Join(repo, "services")
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("building %s: %w\n%s", n, err, b)
		}
		out[n] = bin
	}
	return out, nil
}

// Config configures one lab instance.
type Config struct {
	Repo string
	Bins map[string]string
	Dir  string // run directory: broker data, redis, blobs, service logs
	// Env adds environment variables per service name ("*" for every service).
	Env map[string][]string
	// Partitions per topic, default 6.
	Partitions int
}

// Lab is one running instance: broker, Redis, CRM and the five services.
type Lab struct {
	cfg      Config
	Broker   *Broker
	Redis    *Redis
	CRM      *CRM
	Services map[string]*Service
	SMTPAddr string
}

// Start starts the lab's broker (fresh), Redis, CRM and every service, and applies the topics.
// Everything it started is stopped when the test ends.
func Start(ctx context.Context, t testing.TB, cfg Config) (*Lab, error) {
	if cfg.Partitions == 0 {
		cfg.Partitions = 6
	}
	l := &Lab{cfg: cfg, Services: map[string]*Service{}}
	var err error
	if l.Broker, err = NewBroker(ctx, cfg.Repo, cfg.Dir); err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = l.Broker.Stop() })
	if err := l.Broker.Start(ctx, true); err != nil {
		return nil, err
	}
	if l.Redis, err = NewRedis(ctx, filepath.Join(cfg.Dir, "redis")); err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = l.Redis.Kill() })
	if err := l.Redis.Start(ctx); err != nil {
		return nil, err
	}
	if err := l.CLI(ctx, "topics", "apply", "--partitions", strconv.Itoa(cfg.Partitions)); err != nil {
		return nil, err
	}
	l.CRM = NewCRM(t)
	smtpPort, err := FreePorts(ctx, 1)
	if err != nil {
		return nil, err
	}
	httpPort, err := FreePorts(ctx, 1)
	if err != nil {
		return nil, err
	}
	l.SMTPAddr = "127.0.0.1:" + strconv.Itoa(smtpPort)
	common := []string{
		"MAILPIPE_KAFKA_BROKERS=" + l.Broker.Addr(),
		"MAILPIPE_REDIS_URL=" + l.Redis.URL(),
		"MAILPIPE_BLOB_URL=file://" + filepath.Join(cfg.Dir, "blobs"),
		"MAILPIPE_LOG_LEVEL=info",
		// The plan's process settings, with a shorter session timeout so a killed member's
		// partitions move within the CI budget.
		"MAILPIPE_STAGE_SESSION_TIMEOUT=10s",
		"MAILPIPE_STAGE_TRANSACTION_TIMEOUT=10s",
	}
	perService := map[string][]string{
		"ingress": {
			"MAILPIPE_SMTP_ADDR=" + l.SMTPAddr, "MAILPIPE_HTTP_ADDR=127.0.0.1:" + strconv.Itoa(httpPort),
			"MAILPIPE_INGEST_DOMAINS=" + Domain,
		},
		"crm-sink": {
			"MAILPIPE_WEBHOOK_URL=" + l.CRM.URL(),
			"MAILPIPE_WEBHOOK_SECRETS=" + l.CRM.Secret(),
			"MAILPIPE_WEBHOOK_ALLOW_PRIVATE=true", // the contract server listens on loopback
			"MAILPIPE_SINK_LAKE_SALT=lab-lake-salt-0123456789",
		},
	}
	for _, n := range ServiceNames {
		env := append(append(append([]string{}, common...), perService[n]...), cfg.Env["*"]...)
		env = append(env, cfg.Env[n]...)
		s, err := NewService(ctx, n, cfg.Bins[n], cfg.Dir, env)
		if err != nil {
			return nil, err
		}
		l.Services[n] = s
		t.Cleanup(func() { _, _ = s.Stop(20 * time.Second) })
		if err := s.Start(); err != nil {
			return nil, err
		}
	}
	for _, n := range ServiceNames {
		if err := l.Services[n].WaitReady(ctx, 90*time.Second); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// CLI runs the mailpipe CLI against the lab's broker.
func (l *Lab) CLI(ctx context.Context, args ...string) error {
	_, err := l.CLIOutput(ctx, args...)
	return err
}

// CLIOutput runs the mailpipe CLI and returns its combined output.
func (l *Lab) CLIOutput(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, l.cfg.Bins["mailpipe"], args...)
	cmd.Env = append(os.Environ(), "MAILPIPE_KAFKA_BROKERS="+l.Broker.Addr(), "USER=lab")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("mailpipe %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Restart starts a service again after it exited and waits until it is ready.
func (l *Lab) Restart(ctx context.Context, name string) error {
	s := l.Services[name]
	if err := s.Wait(30 * time.Second); err != nil {
		return err
	}
	if err := s.Start(); err != nil {
		return err
	}
	return s.WaitReady(ctx, 90*time.Second)
}

// RestartBroker stops the broker with SIGKILL, keeps it down for down, and starts it again on
// the same port and data directory.
func (l *Lab) RestartBroker(ctx context.Context, down time.Duration) error {
	if err := l.Broker.Kill(); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(down):
	}
	return l.Broker.Start(ctx, false)
}

// RestartRedis kills redis-server (no persistence: every key is gone), keeps it down for down,
// and starts an empty one on the same port.
func (l *Lab) RestartRedis(ctx context.Context, down time.Duration) error {
	if err := l.Redis.Kill(); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(down):
	}
	return l.Redis.Start(ctx)
}
