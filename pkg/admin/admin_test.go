package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/metric"

	"github.com/mailpipe/mailpipe/pkg/admin"
	"github.com/mailpipe/mailpipe/pkg/app"
)

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newServer(t *testing.T, opts ...admin.Option) *admin.Server {
	t.Helper()
	s, err := admin.New(t.Context(), "127.0.0.1:0", discard(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	return s
}

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

func TestHealthz(t *testing.T) {
	s := newServer(t)
	code, body := get(t, s.Handler(), admin.PathHealth)
	if code != http.StatusOK || strings.TrimSpace(body) != "ok" {
		t.Fatalf("GET /healthz = %d %q, want 200 ok", code, body)
	}
}

func TestReadyz(t *testing.T) {
	ok := func(context.Context) error { return nil }
	for _, tt := range []struct {
		name       string
		checks     map[string]admin.Check
		wantCode   int
		wantStatus string
		wantChecks map[string]string // substring of each check's entry
	}{
		{name: "no checks", wantCode: 200, wantStatus: "ok"},
		{
			name:       "all pass",
			checks:     map[string]admin.Check{"kafka": ok, "redis": ok},
			wantCode:   200,
			wantStatus: "ok",
			wantChecks: map[string]string{"kafka": "ok", "redis": "ok"},
		},
		{
			name: "one fails",
			checks: map[string]admin.Check{
				"kafka": ok,
				"redis": func(context.Context) error { return errors.New("dial tcp: connection refused") },
			},
			wantCode:   503,
			wantStatus: "unavailable",
			wantChecks: map[string]string{"kafka": "ok", "redis": "connection refused"},
		},
		{
			name: "slow check times out",
			checks: map[string]admin.Check{"slow": func(ctx context.Context) error {
				<-ctx.Done()
				time.Sleep(time.Second) // ignores its deadline on purpose
				return nil
			}},
			wantCode:   503,
			wantStatus: "unavailable",
			wantChecks: map[string]string{"slow": "deadline exceeded"},
		},
		{
			name:       "panicking check",
			checks:     map[string]admin.Check{"bad": func(context.Context) error { panic("nil map") }},
			wantCode:   503,
			wantStatus: "unavailable",
			wantChecks: map[string]string{"bad": "panicked"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(t, admin.WithCheckTimeout(50*time.Millisecond))
			for name, c := range tt.checks {
				s.Register(name, c)
			}
			start := time.Now()
			code, body := get(t, s.Handler(), admin.PathReady)
			if d := time.Since(start); d > 500*time.Millisecond {
				t.Errorf("readyz took %v, want it bounded by the check timeout", d)
			}
			if code != tt.wantCode {
				t.Errorf("code = %d, want %d (%s)", code, tt.wantCode, body)
			}
			var got struct {
				Status string            `json:"status"`
				Checks map[string]string `json:"checks"`
			}
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("body %q: %v", body, err)
			}
			if got.Status != tt.wantStatus {
				t.Errorf("status = %q, want %q", got.Status, tt.wantStatus)
			}
			if len(got.Checks) != len(tt.wantChecks) {
				t.Errorf("checks = %v, want %v", got.Checks, tt.wantChecks)
			}
			for name, want := range tt.wantChecks {
				if !strings.Contains(got.Checks[name], want) {
					t.Errorf("check %s = %q, want it to contain %q", name, got.Checks[name], want)
				}
			}
		})
	}
}

func TestReadyzAfterShutdown(t *testing.T) {
	// given a ready server
	s := newServer(t)
	s.Register("kafka", func(context.Context) error { return nil })
	if code, _ := get(t, s.Handler(), admin.PathReady); code != 200 {
		t.Fatalf("readyz before shutdown = %d", code)
	}
	// when shutdown starts
	if err := s.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	// then readiness fails even though every check passes, and Shutdown stays idempotent
	code, body := get(t, s.Handler(), admin.PathReady)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "stopping") {
		t.Fatalf("readyz after shutdown = %d %s", code, body)
	}
	if err := s.Shutdown(t.Context()); err != nil {
		t.Fatalf("second Shutdown = %v", err)
	}
}

func TestMetrics(t *testing.T) {
	s := newServer(t)
	counter, err := s.MeterProvider().Meter("admin_test").Int64Counter("mailpipe.test.records",
		metric.WithUnit("{record}"))
	if err != nil {
		t.Fatal(err)
	}
	counter.Add(t.Context(), 3)

	code, body := get(t, s.Handler(), admin.PathMetrics)
	if code != 200 {
		t.Fatalf("GET /metrics = %d", code)
	}
	for _, want := range []string{"mailpipe_test_records_total", " 3", "go_goroutines", "process_"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// The registry is private: nothing leaks into the process-global one.
	families, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if strings.HasPrefix(f.GetName(), "mailpipe_") {
			t.Errorf("metric %s registered globally", f.GetName())
		}
	}
}

func TestActorServesUntilStopped(t *testing.T) {
	// given the admin server running as an actor
	s, err := admin.New(t.Context(), "127.0.0.1:0", discard())
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + s.Addr().String() + admin.PathHealth
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, discard(), s.Actor()) }()

	// when it answers over the network and the group is cancelled
	waitFor(t, func() bool {
		resp, err := http.Get(url) //nolint:noctx // test probe
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == 200
	})
	cancel()

	// then Run returns nil and the port is closed
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("admin actor did not stop")
	}
	if resp, err := http.Get(url); err == nil { //nolint:noctx // test probe
		_ = resp.Body.Close()
		t.Fatal("admin port still answers after shutdown")
	}
}

func TestNewFailsOnBusyPort(t *testing.T) {
	s := newServer(t)
	if _, err := admin.New(t.Context(), s.Addr().String(), discard()); err == nil {
		t.Fatal("New on a busy port succeeded")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPprofOnlyWhenAsked(t *testing.T) {
	// given: one server with the profiles, one without.
	off := newServer(t)
	on := newServer(t, admin.WithPprof(true))

	// then: the index and a named profile answer only on the first; the others are 404.
	for _, path := range []string{admin.PathPprof, admin.PathPprof + "goroutine?debug=1", admin.PathPprof + "cmdline"} {
		if code, body := get(t, on.Handler(), path); code != http.StatusOK || body == "" {
			t.Errorf("with pprof: GET %s = %d (%d bytes), want 200 and a body", path, code, len(body))
		}
		if code, _ := get(t, off.Handler(), path); code != http.StatusNotFound {
			t.Errorf("without pprof: GET %s = %d, want 404", path, code)
		}
	}
	// A short CPU profile comes back as a gzipped protobuf.
	if code, body := get(t, on.Handler(), admin.PathPprof+"profile?seconds=1"); code != http.StatusOK || !strings.HasPrefix(body, "\x1f\x8b") {
		t.Errorf("GET profile?seconds=1 = %d, %d bytes, want 200 and gzip", code, len(body))
	}
}
