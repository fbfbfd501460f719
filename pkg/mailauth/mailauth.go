// Package mailauth computes sender authentication (SPF, DKIM, DMARC) for a raw
// message and keeps the Authentication-Results headers of trusted hops. Every
// DNS query goes through an injected Resolver so the checks run offline in
// tests (see mailauthtest) and share the caller's resolver in production.
package mailauth

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/mail"
	"net/netip"
	"strings"

	"blitiri.com.ar/go/spf"
	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-msgauth/dmarc"

	"github.com/mailpipe/mailpipe/pkg/events"
)

// DefaultMaxDKIMSignatures bounds the signatures verified per message when
// Config.MaxDKIMSignatures is zero: each one costs a DNS query and a pass over
// the body, so a message stuffed with signatures must not cost unbounded work.
const DefaultMaxDKIMSignatures = 5

// Result values shared by the three checks.
const (
	ResultPass      = "pass"
	ResultFail      = "fail"
	ResultNone      = "none"
	ResultTempError = "temperror"
	ResultPermError = "permerror"
)

// Resolver is the DNS surface the checks need. It is method-compatible with
// *net.Resolver and with spf.DNSResolver. Implementations must report a missing
// name as *net.DNSError with IsNotFound set and a transient failure as
// *net.DNSError with IsTemporary set (unwrapped: the libraries type-assert).
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupAddr(ctx context.Context, addr string) ([]string, error)
}

// Config configures a Verifier.
type Config struct {
	// Resolver answers every DNS query; required.
	Resolver Resolver
	// MaxDKIMSignatures caps the DKIM signatures verified per message; the
	// ones after the cap are reported as permerror. Zero means
	// DefaultMaxDKIMSignatures.
	MaxDKIMSignatures int
	// TrustedAuthServIDs lists the authserv-ids (RFC 8601) whose
	// Authentication-Results headers are preserved; all others are dropped
	// because any earlier hop, including the sender, can forge them.
	TrustedAuthServIDs []string
	// Logger receives debug details of failed checks; nil discards them.
	Logger *slog.Logger
}

// Input is what one message offers to the checks.
type Input struct {
	// Raw is the message as received (headers and body). When Open is set, only its header
	// block is read from Raw.
	Raw []byte
	// Open, when set, returns the whole message again for DKIM's body hash: the parser holds
	// large messages as a skeleton without their big bodies and streams them from the blob
	// store instead.
	Open func() (io.ReadCloser, error)
	// ClientIP is the connecting SMTP client; SPF is skipped when invalid.
	ClientIP netip.Addr
	// MailFrom is the envelope sender (SMTP MAIL FROM), possibly empty.
	MailFrom string
	// Helo is the SMTP HELO/EHLO name.
	Helo string
	// FromDomain is the RFC 5322 From domain; when empty it is taken from
	// the message's From header.
	FromDomain string
}

// DKIMResult is the outcome of one DKIM-Signature header.
type DKIMResult struct {
	Domain   string
	Selector string
	// Result is pass, fail, temperror or permerror.
	Result string
}

// Result is the authentication outcome of one message.
type Result struct {
	// SPF is pass, fail, softfail, neutral, none, temperror, permerror, or
	// empty when not checked (no client IP).
	SPF string
	// DKIM holds one result per DKIM-Signature header, in header order.
	DKIM []DKIMResult
	// DMARC is pass, fail, none (no record), temperror or permerror.
	DMARC string
	// DMARCPolicy is the published policy applied to the From domain (none,
	// quarantine, reject), empty without a record.
	DMARCPolicy string
	// ReceivedResults are the trusted Authentication-Results values, in
	// header order.
	ReceivedResults []string
	// DKIMUnverified counts the DKIM signatures past the cap
	// (Config.MaxDKIMSignatures) that were not verified and read permerror;
	// the parser turns a non-zero count into a warning and a partial record.
	DKIMUnverified int
}

// Authentication converts r to the parsed-event form.
func (r Result) Authentication() events.Authentication {
	a := events.Authentication{
		SPF:             r.SPF,
		DKIM:            make([]events.DKIMResult, 0, len(r.DKIM)),
		DMARC:           r.DMARC,
		DMARCPolicy:     r.DMARCPolicy,
		ReceivedResults: append([]string{}, r.ReceivedResults...),
	}
	for _, d := range r.DKIM {
		a.DKIM = append(a.DKIM, events.DKIMResult{Domain: d.Domain, Selector: d.Selector, Result: d.Result})
	}
	return a
}

// Verifier runs the checks. It is safe for concurrent use.
type Verifier struct {
	resolver Resolver
	maxDKIM  int
	trusted  map[string]struct{}
	logger   *slog.Logger
}

// New returns a Verifier for cfg.
func New(cfg Config) (*Verifier, error) {
	if cfg.Resolver == nil {
		return nil, errors.New("configuring mailauth: Resolver is required")
	}
	if cfg.MaxDKIMSignatures < 0 {
		return nil, errors.New("configuring mailauth: MaxDKIMSignatures must not be negative")
	}
	v := &Verifier{
		resolver: cfg.Resolver,
		maxDKIM:  cfg.MaxDKIMSignatures,
		trusted:  make(map[string]struct{}, len(cfg.TrustedAuthServIDs)),
		logger:   cfg.Logger,
	}
	if v.maxDKIM == 0 {
		v.maxDKIM = DefaultMaxDKIMSignatures
	}
	if v.logger == nil {
		v.logger = slog.New(slog.DiscardHandler)
	}
	for _, id := range cfg.TrustedAuthServIDs {
		v.trusted[strings.ToLower(strings.TrimSpace(id))] = struct{}{}
	}
	return v, nil
}

// Verify runs SPF, DKIM and DMARC for in. Failures of the checks are results
// (temperror, permerror), never errors: a message is always delivered with
// whatever could be established.
func (v *Verifier) Verify(ctx context.Context, in Input) Result {
	hdr := splitHeader(in.Raw)
	res := Result{
		SPF:             v.checkSPF(ctx, in),
		DKIM:            v.checkDKIM(ctx, in, hdr),
		ReceivedResults: v.trustedResults(hdr),
	}
	fromDomain := in.FromDomain
	if fromDomain == "" {
		fromDomain = headerFromDomain(hdr)
	}
	res.DKIMUnverified = max(0, len(res.DKIM)-v.maxDKIM)
	res.DMARC, res.DMARCPolicy = v.checkDMARC(ctx, fromDomain, spfDomain(in), res.SPF, res.DKIM)
	return res
}

func (v *Verifier) checkSPF(ctx context.Context, in Input) string {
	if !in.ClientIP.IsValid() {
		return ""
	}
	ip := net.IP(in.ClientIP.Unmap().AsSlice())
	r, err := spf.CheckHostWithSender(ip, in.Helo, in.MailFrom,
		spf.WithContext(ctx), spf.WithResolver(v.resolver))
	if err != nil {
		// The library returns an error beside most non-pass results; it
		// explains the result rather than replacing it.
		v.logger.DebugContext(ctx, "spf check", "result", string(r), "err", err)
	}
	return string(r)
}

// spfDomain is the identity SPF authenticated: the MAIL FROM domain, or the
// HELO name for the null sender (RFC 7208 section 2.4).
func spfDomain(in Input) string {
	if i := strings.LastIndexByte(in.MailFrom, '@'); i >= 0 {
		return normDomain(in.MailFrom[i+1:])
	}
	return normDomain(in.Helo)
}

func (v *Verifier) checkDKIM(ctx context.Context, in Input, hdr []field) []DKIMResult {
	var out []DKIMResult
	for _, f := range hdr {
		if strings.EqualFold(f.name, "DKIM-Signature") {
			tags := parseTags(f.value)
			out = append(out, DKIMResult{Domain: normDomain(tags["d"]), Selector: tags["s"], Result: ResultPermError})
		}
	}
	if len(out) == 0 {
		return []DKIMResult{}
	}
	var msg io.Reader = bytes.NewReader(in.Raw)
	if in.Open != nil {
		rc, err := in.Open()
		if err != nil {
			v.logger.DebugContext(ctx, "dkim: reopening the message", "err", err)
			for i := range out {
				out[i].Result = ResultTempError
			}
			return out
		}
		defer func() { _ = rc.Close() }()
		msg = rc
	}
	verifs, err := dkim.VerifyWithOptions(msg, &dkim.VerifyOptions{
		LookupTXT:        func(name string) ([]string, error) { return v.resolver.LookupTXT(ctx, name) },
		MaxVerifications: v.maxDKIM,
	})
	if err != nil && !errors.Is(err, dkim.ErrTooManySignatures) {
		// An unexpected error (reading the message) leaves the verifications
		// untrustworthy: the library clears the offending one's Err.
		v.logger.DebugContext(ctx, "dkim verify", "err", err)
		for i := range out {
			out[i].Result = ResultTempError
		}
		return out
	}
	// Verifications come in header order; signatures past the cap keep
	// permerror.
	for i, vf := range verifs {
		if i >= len(out) {
			break
		}
		out[i].Result = dkimResult(vf.Err)
		if vf.Err != nil {
			v.logger.DebugContext(ctx, "dkim signature", "domain", out[i].Domain, "err", vf.Err)
		}
	}
	return out
}

func dkimResult(err error) string {
	switch {
	case err == nil:
		return ResultPass
	case dkim.IsTempFail(err):
		return ResultTempError
	case dkim.IsPermFail(err):
		return ResultPermError
	default:
		return ResultFail
	}
}

// checkDMARC evaluates RFC 7489 for fromDomain. The record is looked up at
// _dmarc.<fromDomain> and then at the organizational domain, where the
// subdomain policy (sp=) applies.
func (v *Verifier) checkDMARC(ctx context.Context, fromDomain, spfDom, spfRes string, dkims []DKIMResult) (result, policy string) {
	fromDomain = normDomain(fromDomain)
	if fromDomain == "" {
		// Without an author domain there is nothing to align with.
		return ResultPermError, ""
	}
	lookup := &dmarc.LookupOptions{LookupTXT: func(name string) ([]string, error) { return v.resolver.LookupTXT(ctx, name) }}
	rec, err := dmarc.LookupWithOptions(fromDomain, lookup)
	sub := false
	if errors.Is(err, dmarc.ErrNoPolicy) {
		if org := orgDomain(fromDomain); org != fromDomain {
			rec, err = dmarc.LookupWithOptions(org, lookup)
			sub = true
		}
	}
	switch {
	case errors.Is(err, dmarc.ErrNoPolicy):
		return ResultNone, ""
	case dmarc.IsTempFail(err):
		return ResultTempError, ""
	case err != nil:
		v.logger.DebugContext(ctx, "dmarc lookup", "domain", fromDomain, "err", err)
		return ResultPermError, ""
	}
	policy = string(rec.Policy)
	if sub && rec.SubdomainPolicy != "" {
		policy = string(rec.SubdomainPolicy)
	}
	if spfRes == ResultPass && aligned(spfDom, fromDomain, rec.SPFAlignment) {
		return ResultPass, policy
	}
	for _, d := range dkims {
		if d.Result == ResultPass && aligned(d.Domain, fromDomain, rec.DKIMAlignment) {
			return ResultPass, policy
		}
	}
	return ResultFail, policy
}

// aligned reports identifier alignment (RFC 7489 section 3.1): strict needs
// equal domains, relaxed (the default) equal organizational domains.
func aligned(domain, from string, mode dmarc.AlignmentMode) bool {
	domain = normDomain(domain)
	if domain == "" {
		return false
	}
	if mode == dmarc.AlignmentStrict {
		return domain == from
	}
	return orgDomain(domain) == orgDomain(from)
}

// orgDomain approximates the organizational domain as the last two labels.
// It is knowingly wrong for multi-label public suffixes (example.co.uk gives
// co.uk), which makes relaxed alignment too lenient and the fallback lookup
// miss there; a Public Suffix List lookup would fix both.
func orgDomain(d string) string {
	labels := strings.Split(d, ".")
	if len(labels) <= 2 {
		return d
	}
	return strings.Join(labels[len(labels)-2:], ".")
}

func normDomain(d string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
}

func (v *Verifier) trustedResults(hdr []field) []string {
	out := []string{}
	for _, f := range hdr {
		if !strings.EqualFold(f.name, "Authentication-Results") {
			continue
		}
		if _, ok := v.trusted[authServID(f.value)]; ok {
			out = append(out, strings.TrimSpace(f.value))
		}
	}
	return out
}

// authServID returns the lower-cased authserv-id of an Authentication-Results
// value: the first token before ";" (an optional version follows it).
func authServID(value string) string {
	id, _, _ := strings.Cut(value, ";")
	fields := strings.Fields(id)
	if len(fields) == 0 {
		return ""
	}
	return strings.ToLower(fields[0])
}

func headerFromDomain(hdr []field) string {
	for _, f := range hdr {
		if !strings.EqualFold(f.name, "From") {
			continue
		}
		addrs, err := mail.ParseAddressList(f.value)
		if err != nil || len(addrs) == 0 {
			return ""
		}
		if i := strings.LastIndexByte(addrs[0].Address, '@'); i >= 0 {
			return addrs[0].Address[i+1:]
		}
		return ""
	}
	return ""
}

type field struct{ name, value string }

// splitHeader returns the header fields of raw, unfolded, in order. It is
// lenient (LF or CRLF, lines without a colon skipped) because the checks must
// not fail where the parser tolerates the message.
func splitHeader(raw []byte) []field {
	var out []field
	for len(raw) > 0 {
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			if len(out) > 0 {
				out[len(out)-1].value += " " + strings.TrimSpace(string(line))
			}
			continue
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		out = append(out, field{name: strings.TrimSpace(string(name)), value: strings.TrimSpace(string(value))})
	}
	return out
}

// parseTags parses a DKIM tag list (RFC 6376 section 3.2), whitespace removed.
func parseTags(v string) map[string]string {
	tags := map[string]string{}
	for _, kv := range strings.Split(v, ";") {
		k, val, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		tags[strings.TrimSpace(k)] = strings.Join(strings.Fields(val), "")
	}
	return tags
}
