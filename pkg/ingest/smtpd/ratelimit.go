package smtpd

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/emersion/go-smtp"

	"github.com/mailpipe/mailpipe/pkg/ratelimit"
)

// Names of the limits given to the ratelimit.Factory; they namespace the buckets.
const (
	limitConnections = "smtp-connections"
	limitMessages    = "smtp-messages"
)

// rateLimitTimeout bounds one limiter call. Redis answers in a millisecond or two; past this the
// limiter is treated as down and the client let through (fail open), so a Redis outage costs
// each new connection at most this much delay before its greeting.
const rateLimitTimeout = 500 * time.Millisecond

// limiterWarnEvery spaces out the warnings about a failing limiter, which would otherwise come
// once per connection and per message for as long as Redis is down.
const limiterWarnEvery = 10 * time.Second

// Option configures New.
type Option interface{ apply(*options) }

type options struct {
	limiters ratelimit.Factory
	meters   metric.MeterProvider
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithRateLimiter sets the backend of Config.RateConnections and Config.RateMessages. Without
// it, configuring either limit is an error. The ingress service passes redisratelimit.Factory,
// so all replicas share the buckets; tests pass ratelimit.MemoryFactory.
func WithRateLimiter(f ratelimit.Factory) Option {
	return optionFunc(func(o *options) { o.limiters = f })
}

// limits are the server's per-client rate limits; a nil limiter does not limit.
type limits struct {
	conns, msgs ratelimit.Limiter
	exempt      []netip.Prefix
	log         *slog.Logger

	mu       sync.Mutex
	lastWarn time.Time
}

func newLimits(cfg Config, f ratelimit.Factory, log *slog.Logger) (*limits, error) {
	l := &limits{log: log}
	var err error
	if l.exempt, err = parseNetworks(cfg.RateExempt); err != nil {
		return nil, fmt.Errorf("rate exempt: %w", err)
	}
	if !cfg.RateConnections.Enabled() && !cfg.RateMessages.Enabled() {
		return l, nil
	}
	if f == nil {
		return nil, fmt.Errorf("rate limits are configured (connections %q, messages %q) but no limiter backend is: the ingress service needs Redis (MAILPIPE_REDIS_URL)",
			cfg.RateConnections, cfg.RateMessages)
	}
	if cfg.RateConnections.Enabled() {
		if l.conns, err = f(limitConnections, cfg.RateConnections); err != nil {
			return nil, fmt.Errorf("building the connection rate limiter: %w", err)
		}
	}
	if cfg.RateMessages.Enabled() {
		if l.msgs, err = f(limitMessages, cfg.RateMessages); err != nil {
			return nil, fmt.Errorf("building the message rate limiter: %w", err)
		}
	}
	return l, nil
}

// allow takes a token for ip from lim. It fails open: a limiter error lets the client through.
func (l *limits) allow(ctx context.Context, lim ratelimit.Limiter, ip netip.Addr) (bool, time.Duration) {
	if lim == nil || !ip.IsValid() {
		return true, 0
	}
	for _, p := range l.exempt {
		if p.Contains(ip) {
			return true, 0
		}
	}
	ctx, cancel := context.WithTimeout(ctx, rateLimitTimeout)
	defer cancel()
	ok, retry, err := lim.Allow(ctx, rateKey(ip))
	if err != nil {
		l.warn(ctx, err)
		return true, 0
	}
	return ok, retry
}

// warn logs a limiter failure at most once per limiterWarnEvery.
func (l *limits) warn(ctx context.Context, err error) {
	l.mu.Lock()
	now := time.Now()
	quiet := now.Sub(l.lastWarn) < limiterWarnEvery
	if !quiet {
		l.lastWarn = now
	}
	l.mu.Unlock()
	if quiet {
		return
	}
	l.log.WarnContext(ctx, "smtp rate limiter failed; letting clients through until it recovers (fail open)",
		slog.String("error", err.Error()))
}

// rateKey is the bucket of a client address: the address itself for IPv4, its /64 for IPv6,
// since one IPv6 host usually holds a whole /64 and could otherwise take a fresh bucket per
// connection.
func rateKey(ip netip.Addr) string {
	ip = ip.Unmap()
	if ip.Is6() {
		return netip.PrefixFrom(ip, 64).Masked().String()
	}
	return ip.String()
}

// parseNetworks parses CIDR prefixes; a bare address is its own /32 or /128.
func parseNetworks(items []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range items {
		s = strings.TrimSpace(s)
		if !strings.Contains(s, "/") {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("%q is neither a network (CIDR) nor an address", s)
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a network: %w", s, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func addrOf(a net.Addr) netip.Addr {
	ip, err := netip.ParseAddr(hostOf(a))
	if err != nil {
		return netip.Addr{}
	}
	return ip.Unmap()
}

// retryIn renders a retry-after for a reply text, rounded up to whole seconds.
func retryIn(d time.Duration) string {
	return (d + time.Second - 1).Truncate(time.Second).String()
}

func errTooMuchMail(ip netip.Addr, retry time.Duration) *smtp.SMTPError {
	// 450 4.7.1 as Postfix answers its message rate limit: a temporary refusal of this
	// transaction; the client keeps the message and retries.
	return &smtp.SMTPError{
		Code: 450, EnhancedCode: smtp.EnhancedCode{4, 7, 1},
		Message: fmt.Sprintf("Too much mail from %s, try again in %s", ip, retryIn(retry)),
	}
}
