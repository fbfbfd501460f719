package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// FreePorts returns the first of n consecutive loopback ports nobody listens on, chosen at random
// in 20000-32000: below Linux's ephemeral range, where an outgoing connection could hold a port
// between the check and the bind (the reason scripts/kafka-up.sh picks its defaults there too).
func FreePorts(ctx context.Context, n int) (int, error) {
	for range 200 {
		p := 20000 + rand.IntN(12000) //nolint:gosec // a port number, not a secret
		ok := true
		var ls []net.Listener
		for i := range n {
			l, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:"+strconv.Itoa(p+i))
			if err != nil {
				ok = false
				break
			}
			ls = append(ls, l)
		}
		for _, l := range ls {
			_ = l.Close()
		}
		if ok {
			return p, nil
		}
	}
	return 0, errors.New("no free loopback ports found")
}

// waitPort waits until something accepts connections on addr.
func waitPort(ctx context.Context, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		c, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", addr)
		if err == nil {
			_ = c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("nothing listens on %s after %s", addr, timeout)
}

// alive reports whether pid is a running (not zombie) process.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	if i := bytes.LastIndexByte(b, ')'); i > 0 && i+2 < len(b) {
		return b[i+2] != 'Z' && b[i+2] != 'X'
	}
	return true
}

// Broker is the lab's own single-node Kafka (KRaft) broker, started with scripts/kafka-up.sh on a
// port of its own with a data directory under the lab's run directory. It can be killed and
// started again on the same port and data directory (the broker-restart fault).
type Broker struct {
	Port    int
	repo    string
	runRoot string // MAILPIPE_RUN for the script: the data lives in runRoot/kafka-<port>
	pid     int
}

// NewBroker prepares a broker on a free port pair (the controller takes Port+1) under runRoot.
func NewBroker(ctx context.Context, repo, runRoot string) (*Broker, error) {
	p, err := FreePorts(ctx, 2)
	if err != nil {
		return nil, err
	}
	return &Broker{Port: p, repo: repo, runRoot: runRoot}, nil
}

// Addr is the bootstrap address.
func (b *Broker) Addr() string { return "127.0.0.1:" + strconv.Itoa(b.Port) }

// Dir is the broker's run directory (server.properties, data, kafka.log).
func (b *Broker) Dir() string { return filepath.Join(b.runRoot, "kafka-"+strconv.Itoa(b.Port)) }

// Start starts the broker; fresh wipes the data directory first. It returns once the broker
// listens.
func (b *Broker) Start(ctx context.Context, fresh bool) error {
	cmd := exec.CommandContext(ctx, filepath.Join(b.repo, "scripts", "kafka-up.sh"))
	cmd.Env = append(os.Environ(), "KAFKA_PORT="+strconv.Itoa(b.Port), "MAILPIPE_RUN="+b.runRoot)
	if fresh {
		cmd.Env = append(cmd.Env, "KAFKA_FRESH=1")
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("kafka-up.sh on port %d: %w\n%s", b.Port, err, out)
	}
	raw, err := os.ReadFile(filepath.Join(b.Dir(), "pid"))
	if err != nil {
		return fmt.Errorf("broker pid file: %w", err)
	}
	b.pid, err = strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		return fmt.Errorf("broker pid file: %w", err)
	}
	return nil
}

// PID is the running broker's process id (0 before Start).
func (b *Broker) PID() int { return b.pid }

// Signal sends sig to the broker process the lab started.
func (b *Broker) Signal(sig syscall.Signal) error {
	if b.pid == 0 {
		return errors.New("broker not started")
	}
	return syscall.Kill(b.pid, sig)
}

// Kill sends SIGKILL and waits until the process is gone.
func (b *Broker) Kill() error {
	if b.pid == 0 || !alive(b.pid) {
		return nil
	}
	if err := syscall.Kill(b.pid, syscall.SIGKILL); err != nil {
		return err
	}
	return waitGone(b.pid, 30*time.Second)
}

// Stop sends SIGTERM, waits up to 30 s, then SIGKILL.
func (b *Broker) Stop() error {
	if b.pid == 0 || !alive(b.pid) {
		return nil
	}
	_ = syscall.Kill(b.pid, syscall.SIGCONT) // a paused broker cannot stop
	if err := syscall.Kill(b.pid, syscall.SIGTERM); err != nil {
		return err
	}
	if waitGone(b.pid, 30*time.Second) == nil {
		return nil
	}
	return b.Kill()
}

func waitGone(pid int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if !alive(pid) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("process %d still running after %s", pid, timeout)
}

// Redis is the lab's own redis-server (no persistence), a child process of the lab.
type Redis struct {
	Port int
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

// NewRedis prepares a redis-server on a free port with its files in dir.
func NewRedis(ctx context.Context, dir string) (*Redis, error) {
	p, err := FreePorts(ctx, 1)
	if err != nil {
		return nil, err
	}
	return &Redis{Port: p, dir: dir}, nil
}

// URL is the redis:// URL of database 0.
func (r *Redis) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.Port) }

// Start starts redis-server and waits until it listens.
func (r *Redis) Start(ctx context.Context) error {
	if err := os.MkdirAll(r.dir, 0o750); err != nil {
		return err
	}
	log, err := os.OpenFile(filepath.Join(r.dir, "redis.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command("redis-server", "--bind", "127.0.0.1", "--port", strconv.Itoa(r.Port), //nolint:noctx // outlives ctx: killed by the lab
		"--dir", r.dir, "--save", "", "--appendonly", "no")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		_ = log.Close()
		return fmt.Errorf("starting redis-server: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); _ = log.Close(); close(done) }()
	r.cmd, r.done = cmd, done
	return waitPort(ctx, fmt.Sprintf("127.0.0.1:%d", r.Port), 20*time.Second)
}

// Kill sends SIGKILL to the redis-server the lab started and waits for it to exit.
func (r *Redis) Kill() error {
	if r.cmd == nil {
		return nil
	}
	select {
	case <-r.done:
		return nil
	default:
	}
	_ = r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.done
	return nil
}
