// Package admin is the admin HTTP server every mailpipe service runs on its admin port:
// /healthz (liveness), /readyz (readiness from named checks), /metrics (Prometheus text from an
// OpenTelemetry MeterProvider), plus any operator endpoints a service mounts with Handle.
//
// Liveness and readiness are deliberately different: /healthz answers 200 as long as the process
// serves HTTP, so Kubernetes restarts only a wedged process; /readyz runs the registered checks
// (broker reachable, Redis reachable, …) and turns 503 as soon as shutdown starts, so the pod
// leaves the Service before its listeners close.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/mailpipe/mailpipe/pkg/app"
)

// Paths served by every admin server.
const (
	PathHealth  = "/healthz"
	PathReady   = "/readyz"
	PathMetrics = "/metrics"
	// PathPprof is where WithPprof mounts the runtime profiles (net/http/pprof).
	PathPprof = "/debug/pprof/"
)

// Check reports whether one dependency is ready; a nil error means ready. It must honour ctx,
// which carries the check timeout, and be safe for concurrent use: probes may overlap.
type Check func(ctx context.Context) error

// Option configures a Server.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	checkTimeout      time.Duration
	readHeaderTimeout time.Duration
	resource          *resource.Resource
	pprof             bool
}

func defaultConfig() config {
	return config{checkTimeout: 2 * time.Second, readHeaderTimeout: 5 * time.Second}
}

// WithCheckTimeout bounds each readiness check, default 2 s. Keep it below the probe's
// timeoutSeconds so a slow dependency shows as "not ready" rather than a probe timeout.
func WithCheckTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) { c.checkTimeout = d })
}

// WithResource sets the OTel resource (service.name, …) of the MeterProvider; it appears as the
// target_info metric. Default: the SDK's default resource.
func WithResource(r *resource.Resource) Option {
	return optionFunc(func(c *config) { c.resource = r })
}

// WithPprof serves the net/http/pprof profiles under /debug/pprof/ (CPU profile, heap,
// goroutines, …). Off by default: a profile costs CPU while it runs and the goroutine dump shows
// internals, so turn it on only where the admin port is private (MAILPIPE_ADMIN_PPROF).
func WithPprof(on bool) Option {
	return optionFunc(func(c *config) { c.pprof = on })
}

// Server is the admin HTTP server. Its methods are safe for concurrent use.
type Server struct {
	log      *slog.Logger
	cfg      config
	ln       net.Listener
	http     *http.Server
	mux      *http.ServeMux
	registry *prometheus.Registry
	meters   *sdkmetric.MeterProvider

	mu     sync.RWMutex
	checks map[string]Check

	stopping     atomic.Bool
	shutdownOnce sync.Once
	shutdownErr  error
}

// New builds the server and binds addr (host:port; port 0 picks a free one, see Addr) right away,
// so a port conflict fails at startup, before any stage begins consuming. Serve starts answering.
// The metrics registry is private to the server (Go and process collectors plus the OTel
// exporter), never prometheus.DefaultRegisterer, so tests and several servers in one process do
// not collide.
func New(ctx context.Context, addr string, log *slog.Logger, opts ...Option) (*Server, error) {
	if log == nil {
		return nil, errors.New("admin: logger is required")
	}
	cfg := defaultConfig()
	for _, o := range opts {
		o.apply(&cfg)
	}
	if cfg.checkTimeout <= 0 {
		return nil, fmt.Errorf("admin: check timeout must be positive, got %v", cfg.checkTimeout)
	}

	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, fmt.Errorf("registering go collector: %w", err)
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, fmt.Errorf("registering process collector: %w", err)
	}
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, fmt.Errorf("creating prometheus exporter: %w", err)
	}
	mpOpts := []sdkmetric.Option{sdkmetric.WithReader(exporter)}
	if cfg.resource != nil {
		mpOpts = append(mpOpts, sdkmetric.WithResource(cfg.resource))
	}

	// New has no request context to honour: binding is a local, immediate operation.
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening on admin address %q: %w", addr, err)
	}

	s := &Server{
		log:      log,
		cfg:      cfg,
		ln:       ln,
		mux:      http.NewServeMux(),
		registry: reg,
		meters:   sdkmetric.NewMeterProvider(mpOpts...),
		checks:   make(map[string]Check),
	}
	s.mux.HandleFunc("GET "+PathHealth, s.serveHealth)
	s.mux.HandleFunc("GET "+PathReady, s.serveReady)
	s.mux.Handle("GET "+PathMetrics, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelError),
		EnableOpenMetrics: true,
	}))
	if cfg.pprof {
		s.mux.HandleFunc("GET "+PathPprof, pprof.Index)
		s.mux.HandleFunc("GET "+PathPprof+"cmdline", pprof.Cmdline)
		s.mux.HandleFunc("GET "+PathPprof+"profile", pprof.Profile)
		s.mux.HandleFunc("GET "+PathPprof+"symbol", pprof.Symbol)
		s.mux.HandleFunc("POST "+PathPprof+"symbol", pprof.Symbol)
		s.mux.HandleFunc("GET "+PathPprof+"trace", pprof.Trace)
	}
	s.http = &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: cfg.readHeaderTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// Addr is the bound address; useful when New was given port 0.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Handler is the server's HTTP handler, for tests and for embedding in another server.
func (s *Server) Handler() http.Handler { return s.mux }

// Handle mounts an operator endpoint (for example the DLQ API) on the admin port. The pattern
// follows http.ServeMux; registering one of the built-in paths again panics, as ServeMux does.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// MeterProvider is the provider whose instruments /metrics exposes. Pass it to every component
// that records metrics (kotel, stage middleware, …). It is shut down by Shutdown.
func (s *Server) MeterProvider() metric.MeterProvider { return s.meters }

// Registerer accepts plain Prometheus collectors for libraries that do not speak OTel; they are
// served on /metrics next to the OTel instruments.
func (s *Server) Registerer() prometheus.Registerer { return s.registry }

// Register adds or replaces the readiness check called name. /readyz is 200 only when every
// check passes; with no checks registered it is 200 (the process is up and not stopping).
func (s *Server) Register(name string, check Check) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks[name] = check
}

// Serve answers requests until Shutdown; it returns nil after a Shutdown and the listener's
// error otherwise. Call it once.
func (s *Server) Serve(ctx context.Context) error {
	s.http.BaseContext = func(net.Listener) context.Context { return ctx }
	s.log.InfoContext(ctx, "admin server listening", "addr", s.ln.Addr().String())
	if err := s.http.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving admin http: %w", err)
	}
	return nil
}

// Shutdown marks the process not ready, stops the HTTP server gracefully within ctx's deadline,
// and shuts the MeterProvider down. It is idempotent: later calls return the first result.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() {
		s.stopping.Store(true)
		var errs []error
		if err := s.http.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("shutting down admin http: %w", err))
		}
		// Serve may never have run; closing the listener again is harmless.
		if err := s.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("closing admin listener: %w", err))
		}
		if err := s.meters.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("shutting down meter provider: %w", err))
		}
		s.shutdownErr = errors.Join(errs...)
	})
	return s.shutdownErr
}

// Actor runs the server in an app.Run group. Start it last so it stops first: /readyz turns 503
// before intake stops.
func (s *Server) Actor() app.Actor {
	return app.Actor{Name: "admin", Run: s.Serve, Stop: s.Shutdown}
}

func (s *Server) serveHealth(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

// readiness is the /readyz body: overall status and one entry per check ("ok" or the error).
type readiness struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks,omitempty"`
}

func (s *Server) serveReady(w http.ResponseWriter, r *http.Request) {
	body := readiness{Status: "ok"}
	code := http.StatusOK
	if s.stopping.Load() {
		body.Status, code = "stopping", http.StatusServiceUnavailable
	} else if failed := s.runChecks(r.Context(), &body); failed {
		body.Status, code = "unavailable", http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}

// runChecks runs all checks concurrently, each under the check timeout, and reports whether any
// failed.
func (s *Server) runChecks(ctx context.Context, body *readiness) bool {
	s.mu.RLock()
	checks := maps.Clone(s.checks)
	s.mu.RUnlock()
	if len(checks) == 0 {
		return false
	}
	names := slices.Sorted(maps.Keys(checks))
	results := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, s.cfg.checkTimeout)
			defer cancel()
			results[i] = runCheck(cctx, checks[name])
		})
	}
	wg.Wait()
	body.Checks = make(map[string]string, len(names))
	failed := false
	for i, name := range names {
		if err := results[i]; err != nil {
			failed = true
			body.Checks[name] = err.Error()
			s.log.WarnContext(ctx, "readiness check failed", "check", name, "err", err)
			continue
		}
		body.Checks[name] = "ok"
	}
	return failed
}

// runCheck turns a check that outlives its timeout or panics into a failure instead of a hung or
// crashed probe.
func runCheck(ctx context.Context, check Check) (err error) {
	done := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- fmt.Errorf("check panicked: %v", r)
			}
		}()
		done <- check(ctx)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("waiting for check: %w", ctx.Err())
	}
}
