package e2e_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// env reads a required service address. `make test` exports them after starting the services;
// a missing one is a failure, not a skip (unless -short, which `make unit` uses).
func env(t *testing.T, name, script string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		if testing.Short() {
			t.Skip("e2e needs real services; run make test")
		}
		t.Fatalf("%s is not set: start %s (make services-up) and export it", name, script)
	}
	return v
}

// buildServices compiles every service binary once per test run into dir.
func buildServices(t *testing.T, dir string, names ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, n := range names {
		bin := filepath.Join(dir, n)
		cmd := exec.CommandContext(t.Context(), "go", "build", "-race", "-o", bin, "github.com/mailpipe/mailpipe/services/"+n)
		cmd.Dir = filepath.Join("..", "services")
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
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// proc is one service running as an OS process, its output kept for failure reports.
type proc struct {
	name  string
	cmd   *exec.Cmd
	admin string
	mu    sync.Mutex
	lines []string
	done  chan struct{}
}

func startProc(t *testing.T, name, bin string, env []string) *proc {
	t.Helper()
	p := &proc{name: name, admin: freeAddr(t), done: make(chan struct{})}
	p.cmd = exec.Command(bin) //nolint:noctx // the process outlives no test: stopped in Cleanup
	p.cmd.Env = append(os.Environ(), append(env, "MAILPIPE_ADMIN_ADDR="+p.admin, "MAILPIPE_LOG_LEVEL=info")...)
	pr, pw := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		s := bufio.NewScanner(pr)
		s.Buffer(make([]byte, 64*1024), 1024*1024)
		for s.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, s.Text())
			p.mu.Unlock()
		}
	}()
	go func() { _ = p.cmd.Wait(); _ = pw.Close(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			p.dump(t, 60)
		}
	})
	return p
}

func (p *proc) dump(t *testing.T, n int) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	from := max(0, len(p.lines)-n)
	t.Logf("---- last %d lines of %s ----\n%s", len(p.lines)-from, p.name, strings.Join(p.lines[from:], "\n"))
}

// waitReady polls the service's /readyz until it answers 200.
func (p *proc) waitReady(t *testing.T, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	url := "http://" + p.admin + "/readyz"
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			p.dump(t, 40)
			t.Fatalf("%s exited before it was ready", p.name)
		default:
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
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

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		ok, msg := cond()
		if ok {
			return
		}
		last = msg
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s: %s", timeout, what, last)
}

func must(t *testing.T, err error, what string, args ...any) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", fmt.Sprintf(what, args...), err)
	}
}
