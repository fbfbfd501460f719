package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// services are the five processes of the pipeline, in the order they start.
var services = []string{"ingress", "parser", "classifier", "enricher", "crm-sink"}

// stages are the Kafka→Kafka services and their consumer groups (the stage default,
// mailpipe-<name>), whose lag the benchmark follows.
var stages = []string{"parser", "classifier", "enricher", "crm-sink"}

// build compiles the services and the mailpipe CLI into dir in one go build, without the race
// detector, whose own cost would be what the benchmark measures.
func build(t *testing.T, root, dir string) {
	t.Helper()
	args := []string{"build", "-trimpath", "-o", dir + string(os.PathSeparator)}
	for _, s := range append([]string{"mailpipe"}, services...) {
		args = append(args, "./"+s)
	}
	cmd := exec.CommandContext(t.Context(), "go", args...)
	cmd.Dir = filepath.Join(root, "services")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the services: %v\n%s", err, b)
	}
}

// freeAddr returns a loopback address with a port nobody listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// freeLowPort returns a port below Linux's ephemeral range (see scripts/kafka-up.sh) that is
// free together with the next n-1 ports.
func freeLowPort(t *testing.T, from, n int) int {
	t.Helper()
	for p := from; p < 32000; p += 10 {
		ok := true
		for i := range n {
			l, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", fmt.Sprintf("127.0.0.1:%d", p+i))
			if err != nil {
				ok = false
				break
			}
			_ = l.Close()
		}
		if ok {
			return p
		}
	}
	t.Fatalf("no free port from %d", from)
	return 0
}

// script runs one of scripts/*.sh with extra environment and returns its last output line.
func script(ctx context.Context, root, name string, env ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(root, "scripts", name))
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%s: %w\n%s", name, err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1], nil
}

// proc is one service process. Its output goes to a log file, whose tail is shown when the
// benchmark fails.
type proc struct {
	name, admin, log string
	cmd              *exec.Cmd
	cancel           context.CancelFunc
	done             chan struct{}
	stopOnce         sync.Once
	waitErr, stopErr error
}

// start runs bin with env and a fresh admin address. Stopping is SIGINT (the graceful path),
// then SIGKILL after 30 s.
func start(t *testing.T, name, bin, dir string, env []string) *proc {
	t.Helper()
	p := &proc{name: name, admin: freeAddr(t), log: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	logf, err := os.Create(p.log)
	if err != nil {
		t.Fatalf("creating %s: %v", p.log, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.cmd = exec.CommandContext(ctx, bin)
	p.cmd.Cancel = func() error { return p.cmd.Process.Signal(os.Interrupt) }
	p.cmd.WaitDelay = 30 * time.Second
	p.cmd.Env = append(os.Environ(), append(env, "MAILPIPE_ADMIN_ADDR="+p.admin, "MAILPIPE_ADMIN_PPROF=true")...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		cancel()
		_ = logf.Close()
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		_ = logf.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		if err := p.stop(); err != nil {
			t.Log(err)
		}
		if t.Failed() {
			p.dump(t, 30)
		}
	})
	return p
}

// stop ends the process gracefully and reports how it exited; later calls return the first
// result.
func (p *proc) stop() error {
	p.stopOnce.Do(func() {
		p.cancel()
		<-p.done
		if p.waitErr != nil && !errors.Is(p.waitErr, context.Canceled) {
			p.stopErr = fmt.Errorf("%s exited: %w", p.name, p.waitErr)
		}
	})
	return p.stopErr
}

// exited reports whether the process ended on its own.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) dump(t *testing.T, n int) {
	t.Helper()
	b, err := os.ReadFile(p.log)
	if err != nil {
		return
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	from := max(0, len(lines)-n)
	t.Logf("---- last %d lines of %s ----\n%s", len(lines)-from, p.name, strings.Join(lines[from:], "\n"))
}

// waitReady polls /readyz on the admin port until it answers 200.
func (p *proc) waitReady(t *testing.T, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if p.exited() {
			p.dump(t, 40)
			t.Fatalf("%s exited before it was ready: %v", p.name, p.waitErr)
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.admin+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		cancel()
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	p.dump(t, 40)
	t.Fatalf("%s not ready after %s", p.name, timeout)
}

// profile fetches a CPU profile of d from the admin port's /debug/pprof/profile into path.
func (p *proc) profile(ctx context.Context, d time.Duration, path string) error {
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", p.admin, int(d.Seconds()))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("profiling %s: %w", p.name, err)
	}
	defer func() { _ = resp.Body.Close() }()
	var b bytes.Buffer
	if _, err := b.ReadFrom(resp.Body); err != nil {
		return fmt.Errorf("profiling %s: %w", p.name, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profiling %s: %s: %s", p.name, resp.Status, b.String())
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// usage is what /proc says about one process at one moment.
type usage struct {
	cpu time.Duration // user + system time so far
	hwm int64         // VmHWM, peak resident set, bytes
}

// readUsage reads the CPU time (from /proc/PID/stat, in USER_HZ ticks of 1/100 s, fixed by
// the kernel ABI) and VmHWM of pid; zero values when the process is gone.
func readUsage(pid int) usage {
	var u usage
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// The command name (field 2) may hold spaces; the fields after its ')' start at field 3.
		if i := bytes.LastIndexByte(b, ')'); i >= 0 {
			if f := strings.Fields(string(b[i+1:])); len(f) >= 13 {
				ut, _ := strconv.ParseInt(f[11], 10, 64)
				st, _ := strconv.ParseInt(f[12], 10, 64)
				u.cpu = time.Duration(ut+st) * (time.Second / 100)
			}
		}
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
				u.hwm = kb << 10
			}
		}
	}
	return u
}

// pidFile reads a pid written by scripts/*-up.sh; 0 when there is none.
func pidFile(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}
