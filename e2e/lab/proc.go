package lab

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Service is one mailpipe service run by the lab as an OS process. It can be signalled, killed
// and restarted; its output goes to <dir>/<name>.log across restarts, and it tracks the peak
// resident set size over every incarnation.
type Service struct {
	Name  string
	bin   string
	env   []string
	Admin string // admin listen address (/readyz)
	log   string // log file path

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{}
	starts   int
	peakKiB  int64
	exits    []string
	stopPoll chan struct{}
}

// NewService prepares a service; env is added to the lab process's environment.
func NewService(ctx context.Context, name, bin, dir string, env []string) (*Service, error) {
	p, err := FreePorts(ctx, 1)
	if err != nil {
		return nil, err
	}
	return &Service{
		Name: name, bin: bin, env: env,
		Admin: "127.0.0.1:" + strconv.Itoa(p),
		log:   filepath.Join(dir, name+".log"),
	}, nil
}

// Start starts a new incarnation. It fails if one is still running.
func (s *Service) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		select {
		case <-s.done:
		default:
			return fmt.Errorf("%s is running", s.Name)
		}
	}
	f, err := os.OpenFile(s.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "==== lab: start #%d at %s\n", s.starts+1, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(s.bin) //nolint:gosec,noctx // lab-built binary; stopped by the lab, not by a context
	cmd.Env = append(os.Environ(), append(append([]string{}, s.env...),
		"MAILPIPE_ADMIN_ADDR="+s.Admin, "GOMAXPROCS=1")...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return fmt.Errorf("starting %s: %w", s.Name, err)
	}
	done := make(chan struct{})
	stop := make(chan struct{})
	s.cmd, s.done, s.stopPoll = cmd, done, stop
	s.starts++
	pid := cmd.Process.Pid
	go s.pollRSS(pid, stop)
	go func() {
		err := cmd.Wait()
		close(stop)
		// Not ru_maxrss of the wait status: Linux carries the high-water mark of the mm that
		// exec replaced into it, and with vfork that is the lab's own (large) process.
		s.mu.Lock()
		s.exits = append(s.exits, fmt.Sprint(err))
		s.mu.Unlock()
		fmt.Fprintf(f, "==== lab: exit of pid %d: %v\n", pid, err)
		_ = f.Close()
		close(done)
	}()
	return nil
}

// pollRSS reads VmHWM (the kernel's peak RSS of the process) every 100 ms until the process
// exits, so the peak is known even for an incarnation that is SIGKILLed (growth in its last
// 100 ms excepted).
func (s *Service) pollRSS(pid int, stop <-chan struct{}) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		if kib := vmHWM(pid); kib > 0 {
			s.mu.Lock()
			s.peakKiB = max(s.peakKiB, kib)
			s.mu.Unlock()
		}
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

func vmHWM(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// PID is the current incarnation's process id, 0 if none runs.
func (s *Service) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	select {
	case <-s.done:
		return 0
	default:
		return s.cmd.Process.Pid
	}
}

// Signal sends sig to the current incarnation.
func (s *Service) Signal(sig syscall.Signal) error {
	pid := s.PID()
	if pid == 0 {
		return fmt.Errorf("%s is not running", s.Name)
	}
	return syscall.Kill(pid, sig)
}

// Wait waits until the current incarnation exits or timeout passes.
func (s *Service) Wait(timeout time.Duration) error {
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	if done == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("%s did not exit within %s", s.Name, timeout)
	}
}

// Kill sends SIGKILL and waits for the exit.
func (s *Service) Kill() error {
	if s.PID() == 0 {
		return nil
	}
	_ = s.Signal(syscall.SIGKILL)
	return s.Wait(30 * time.Second)
}

// Stop stops gracefully (SIGCONT in case it is paused, SIGTERM), then SIGKILL after timeout.
// It returns how long the graceful part took.
func (s *Service) Stop(timeout time.Duration) (time.Duration, error) {
	if s.PID() == 0 {
		return 0, nil
	}
	start := time.Now()
	_ = s.Signal(syscall.SIGCONT)
	_ = s.Signal(syscall.SIGTERM)
	if err := s.Wait(timeout); err != nil {
		_ = s.Kill()
		return time.Since(start), err
	}
	return time.Since(start), nil
}

// Restarts is the number of starts after the first.
func (s *Service) Restarts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return max(0, s.starts-1)
}

// PeakRSSMiB is the highest resident set size of any incarnation, in MiB.
func (s *Service) PeakRSSMiB() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return float64(s.peakKiB) / 1024
}

// WaitReady polls /readyz until it answers 200.
func (s *Service) WaitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	url := "http://" + s.Admin + "/readyz"
	for time.Now().Before(deadline) {
		s.mu.Lock()
		done := s.done
		s.mu.Unlock()
		select {
		case <-done:
			return fmt.Errorf("%s exited before it was ready; log tail:\n%s", s.Name, s.Tail(30))
		default:
		}
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		req, _ := http.NewRequestWithContext(rctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		cancel()
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if errors.Is(ctx.Err(), context.Canceled) {
			return ctx.Err()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready after %s; log tail:\n%s", s.Name, timeout, s.Tail(30))
}

// Tail returns the last n lines of the service's log.
func (s *Service) Tail(n int) string {
	b, err := os.ReadFile(s.log)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// LogPath is the service's log file.
func (s *Service) LogPath() string { return s.log }

// Exits lists how each finished incarnation ended.
func (s *Service) Exits() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.exits...)
}
