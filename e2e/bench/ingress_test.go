package bench_test

import (
	"bufio"
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

// build compiles the named services into dir without the race detector, since the race
// detector's own memory and CPU would be what the benchmark measures. src is the module root to
// build from (the work tree, or an exported commit).
func build(t *testing.T, src, dir string, names ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, n := range names {
		bin := filepath.Join(dir, n)
		cmd := exec.CommandContext(t.Context(), "go", "build", "-trimpath", "-o", bin, "./"+n)
		cmd.Dir = filepath.Join(src, "services")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("building %s: %v\n%s", n, err, b)
		}
		out[n] = bin
	}
	return out
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

// ingress is one ingress process. Its output goes to a log file in the test's temporary
// directory, shown (tail) when the test fails.
type ingress struct {
	name                string
	smtp, http, admin   string
	log                 string
	cmd                 *exec.Cmd
	cancel              context.CancelFunc
	done                chan struct{}
	stopOnce            sync.Once
	waitErr, stopResult error
}

// startIngress runs bin with env plus fresh loopback listen addresses. Stopping is SIGINT (the
// graceful path: stop intake, flush the producer), then SIGKILL after 30 s.
func startIngress(t *testing.T, name, bin, dir string, env []string) *ingress {
	t.Helper()
	p := &ingress{
		name: name, smtp: freeAddr(t), http: freeAddr(t), admin: freeAddr(t),
		log: filepath.Join(dir, name+".log"), done: make(chan struct{}),
	}
	logf, err := os.Create(p.log)
	if err != nil {
		t.Fatalf("creating %s: %v", p.log, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	p.cancel = cancel
	p.cmd = exec.CommandContext(ctx, bin)
	p.cmd.Cancel = func() error { return p.cmd.Process.Signal(os.Interrupt) }
	p.cmd.WaitDelay = 30 * time.Second
	p.cmd.Env = append(os.Environ(), append(env,
		"MAILPIPE_SMTP_ADDR="+p.smtp, "MAILPIPE_HTTP_ADDR="+p.http, "MAILPIPE_ADMIN_ADDR="+p.admin)...)
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
		_ = p.stop()
		if t.Failed() {
			p.dump(t, 40)
		}
	})
	return p
}

// stop ends the process gracefully and reports how it exited; later calls return the first
// result.
func (p *ingress) stop() error {
	p.stopOnce.Do(func() {
		p.cancel()
		<-p.done
		// Wait reports the context's cancellation when the process ended on our SIGINT with
		// status 0; a non-zero status or death by a signal comes back as an *exec.ExitError.
		if p.waitErr != nil && !errors.Is(p.waitErr, context.Canceled) {
			p.stopResult = fmt.Errorf("%s exited: %w", p.name, p.waitErr)
		}
	})
	return p.stopResult
}

func (p *ingress) dump(t *testing.T, n int) {
	t.Helper()
	b, err := os.ReadFile(p.log)
	if err != nil {
		t.Logf("reading %s: %v", p.log, err)
		return
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	from := max(0, len(lines)-n)
	t.Logf("---- last %d lines of %s ----\n%s", len(lines)-from, p.name, strings.Join(lines[from:], "\n"))
}

// waitReady polls /readyz on the admin port until it answers 200.
func (p *ingress) waitReady(t *testing.T, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			p.dump(t, 40)
			t.Fatalf("%s exited before it was ready: %v", p.name, p.waitErr)
		default:
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.admin+"/readyz", nil)
		if err != nil {
			cancel()
			t.Fatalf("building readiness request: %v", err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				cancel()
				return
			}
		}
		cancel()
		time.Sleep(200 * time.Millisecond)
	}
	p.dump(t, 40)
	t.Fatalf("%s not ready after %s", p.name, timeout)
}

// memory is what /proc/PID/status says about the process's resident set.
type memory struct {
	// HWM is VmHWM, the peak resident set size since the process started, in bytes.
	HWM int64
	// RSS is VmRSS, the resident set size now, in bytes.
	RSS int64
}

// memory reads VmHWM and VmRSS of the running process.
func (p *ingress) memory(t *testing.T) memory {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("reading the memory of %s: %v", p.name, err)
	}
	defer func() { _ = f.Close() }()
	var m memory
	s := bufio.NewScanner(f)
	for s.Scan() {
		name, rest, ok := strings.Cut(s.Text(), ":")
		if !ok {
			continue
		}
		var dst *int64
		switch name {
		case "VmHWM":
			dst = &m.HWM
		case "VmRSS":
			dst = &m.RSS
		default:
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			t.Fatalf("parsing %q of /proc/%d/status: %v", s.Text(), p.cmd.Process.Pid, err)
		}
		*dst = kb << 10
	}
	if m.HWM == 0 || m.RSS == 0 {
		t.Fatalf("no VmHWM/VmRSS in /proc/%d/status", p.cmd.Process.Pid)
	}
	return m
}

// cpu returns the processor time (user + system) the process used so far, from
// /proc/PID/stat. Linux reports it in USER_HZ ticks, 100 per second on every architecture Go
// supports there (the kernel ABI fixes it, whatever CONFIG_HZ is).
func (p *ingress) cpu(t *testing.T) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("reading the cpu time of %s: %v", p.name, err)
	}
	// The command name (field 2) may hold spaces; the fields after its ')' start at field 3.
	i := bytes.LastIndexByte(b, ')')
	var f []string
	if i >= 0 {
		f = strings.Fields(string(b[i+1:]))
	}
	if len(f) < 13 {
		t.Fatalf("unexpected /proc/%d/stat: %q", p.cmd.Process.Pid, b)
	}
	var ticks int64
	for _, s := range f[11:13] { // utime (field 14) and stime (field 15)
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("parsing /proc/%d/stat: %v", p.cmd.Process.Pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * (time.Second / 100)
}
