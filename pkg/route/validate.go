package route

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode"

	"github.com/mailpipe/mailpipe/pkg/events"
)

// ErrInvalid is matched (errors.Is) by every [*ValidationError]: a route, or a batch of routes,
// that cannot be stored as given. Resubmitting the same input fails the same way.
var ErrInvalid = errors.New("invalid route")

// Problem is one thing wrong with a route.
type Problem struct {
	// Index is the route's position in a batch (an import file, 0-based), or -1 when a single
	// route was checked.
	Index int `json:"index"`
	// Line is the line of the problem in the source file, 0 when unknown (set by the decoder of
	// the file, see [DecodeYAML], and by callers that map Index and Field to lines).
	Line int `json:"line,omitempty"`
	// ID is the route's id when it has one.
	ID string `json:"id,omitempty"`
	// Field is the field at fault in the file/JSON spelling ("pattern", "crm_targets[1]"), or ""
	// when the problem concerns the route as a whole.
	Field string `json:"field,omitempty"`
	// Detail says what is wrong.
	Detail string `json:"detail"`
}

// String formats p as "routes[2] (line 7): crm_targets[1]: unknown CRM target …", leaving out
// the parts that are unknown.
func (p Problem) String() string {
	var b strings.Builder
	if p.Index >= 0 {
		fmt.Fprintf(&b, "routes[%d]", p.Index)
	}
	if p.Line > 0 {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "(line %d)", p.Line)
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if p.Field != "" {
		b.WriteString(p.Field + ": ")
	}
	b.WriteString(p.Detail)
	return b.String()
}

// ValidationError lists every problem found in a route or a batch of routes. It matches
// [ErrInvalid].
type ValidationError struct {
	Problems []Problem
}

// Error joins the problems, one per line after the first.
func (e *ValidationError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return "invalid route: " + strings.Join(lines, "\n")
}

// Is reports whether target is [ErrInvalid].
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

// validationError returns nil for no problems, so callers can return it directly.
func validationError(ps []Problem) error {
	if len(ps) == 0 {
		return nil
	}
	return &ValidationError{Problems: ps}
}

// CRM target names a route may list in crm_targets: the connectors crm-sink builds.
const (
	TargetWebhook    = "webhook"
	TargetHubSpot    = "hubspot"
	TargetSalesforce = "salesforce"
	TargetPipedrive  = "pipedrive"
	TargetPostgres   = "postgres"
	TargetLocal      = "local"
)

// KnownTargets returns the CRM target names a route may use, sorted. The slice is the caller's.
func KnownTargets() []string {
	return []string{TargetHubSpot, TargetLocal, TargetPipedrive, TargetPostgres, TargetSalesforce, TargetWebhook}
}

// Limits on free-form fields. They keep one bad route from bloating every service's table.
const (
	maxIDLen    = 128
	maxNameLen  = 256
	maxListLen  = 1000
	maxTenant   = 63
	maxFlagLen  = 64
	idPrefix    = "r-"
	idHashBytes = 8
)

// Canonical checks r and returns it in canonical form: the pattern in its canonical spelling
// (see [Pattern.String]), sender patterns likewise, and an id derived from the pattern when r has
// none (so importing the same file twice writes the same routes). UpdatedAt is left as it is.
// The error is a [*ValidationError] with Index -1 listing every problem.
func Canonical(r events.Route) (events.Route, error) {
	c, _, ps := canonical(r, -1)
	return c, validationError(ps)
}

// canonical is Canonical for the route at index of a batch; it also returns the parsed pattern
// (zero when the pattern is invalid).
func canonical(r events.Route, index int) (events.Route, Pattern, []Problem) {
	var ps []Problem
	bad := func(field, format string, args ...any) {
		ps = append(ps, Problem{Index: index, ID: r.ID, Field: field, Detail: fmt.Sprintf(format, args...)})
	}

	pat, err := ParsePattern(r.Pattern)
	if err != nil {
		bad("pattern", "%s", err.Error())
	} else {
		r.Pattern = pat.String()
	}

	r.ID = strings.TrimSpace(r.ID)
	switch {
	case r.ID == "" && err == nil:
		r.ID = DefaultID(pat)
	case r.ID == "":
		// No id can be derived from a bad pattern; the pattern problem says enough.
	case len(r.ID) > maxIDLen:
		bad("id", "is longer than %d characters", maxIDLen)
	case !validID(r.ID):
		bad("id", "%q: use letters, digits, '.', '_' or '-', starting with a letter or digit", r.ID)
	}

	switch {
	case pat.Kind == KindPlusTenant && r.Tenant != "":
		bad("tenant", "must be empty: the pattern takes the tenant from the address tag ({tenant})")
	case pat.Kind == KindPlusTenant:
	case r.Tenant == "":
		bad("tenant", "must not be empty (or use a local+{tenant}@domain pattern to take it from the tag)")
	case !ValidTenant(r.Tenant):
		bad("tenant", "%q: use 1 to %d lower-case letters, digits, '.', '_' or '-', starting with a letter or digit", r.Tenant, maxTenant)
	}

	for _, f := range []struct{ name, value string }{
		{"integration_key", r.IntegrationKey}, {"pipeline", r.Pipeline}, {"rules_set", r.RulesSet},
	} {
		if msg := checkName(f.value); msg != "" {
			bad(f.name, "%s", msg)
		}
	}

	seen := make(map[string]bool, len(r.CRMTargets))
	for i, t := range r.CRMTargets {
		field := fmt.Sprintf("crm_targets[%d]", i)
		switch {
		case !slices.Contains(KnownTargets(), t):
			hint := ""
			if l := strings.ToLower(strings.TrimSpace(t)); l != t && slices.Contains(KnownTargets(), l) {
				hint = fmt.Sprintf(" (did you mean %q?)", l)
			}
			bad(field, "unknown CRM target %q%s; known targets: %s", t, hint, strings.Join(KnownTargets(), ", "))
		case seen[t]:
			bad(field, "%q is listed twice", t)
		}
		seen[t] = true
	}

	for _, l := range []struct {
		name string
		list *[]string
	}{{"allow_senders", &r.AllowSenders}, {"deny_senders", &r.DenySenders}} {
		if len(*l.list) > maxListLen {
			bad(l.name, "lists %d patterns; at most %d are allowed", len(*l.list), maxListLen)
			continue
		}
		out := make([]string, 0, len(*l.list))
		for i, s := range *l.list {
			c, err := canonicalSender(s)
			if err != nil {
				bad(fmt.Sprintf("%s[%d]", l.name, i), "%s", err.Error())
				continue
			}
			out = append(out, c)
		}
		*l.list = out
	}

	if len(r.Consent) > maxListLen {
		bad("consent", "sets %d flags; at most %d are allowed", len(r.Consent), maxListLen)
	}
	for _, name := range slices.Sorted(maps.Keys(r.Consent)) {
		if !validFlag(name) {
			bad("consent", "flag %q: use 1 to %d lower-case letters, digits or '_', starting with a letter", name, maxFlagLen)
		}
	}

	if r.MaxSize < 0 {
		bad("max_size", "%d is negative: give a size in bytes, or 0 for the server default", r.MaxSize)
	}
	if err != nil {
		pat = Pattern{}
	}
	return r, pat, ps
}

// DefaultID is the id given to a route stored without one: "r-" and 16 hex digits of the SHA-256
// of the canonical pattern. Equal patterns get equal ids, so re-importing a file updates the
// routes it created instead of colliding with them.
func DefaultID(p Pattern) string {
	sum := sha256.Sum256([]byte(p.String()))
	return idPrefix + hex.EncodeToString(sum[:idHashBytes])
}

// ValidTenant reports whether s is a valid tenant name: 1 to 63 lower-case ASCII letters,
// digits, '.', '_' or '-', starting with a letter or digit. A tag taken as the tenant
// ({tenant} patterns) must be one too.
func ValidTenant(s string) bool {
	if s == "" || len(s) > maxTenant || !isAlnumLower(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isAlnumLower(c) && c != '.' && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

func isAlnumLower(c byte) bool { return ('a' <= c && c <= 'z') || ('0' <= c && c <= '9') }

// validFlag reports whether s is a consent flag name: lower-case snake case, so subscribers can
// match flags without normalizing them.
func validFlag(s string) bool {
	if s == "" || len(s) > maxFlagLen || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isAlnumLower(c) && c != '_' {
			return false
		}
	}
	return true
}

func validID(s string) bool {
	isAlnum := func(c byte) bool { return isAlnumLower(c) || ('A' <= c && c <= 'Z') }
	if !isAlnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '.' && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

// checkName returns what is wrong with a free-form name (integration key, pipeline, rules set),
// or "" when nothing is. Empty is allowed: each field documents what empty means.
func checkName(s string) string {
	if len(s) > maxNameLen {
		return fmt.Sprintf("is longer than %d characters", maxNameLen)
	}
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Sprintf("%q contains space or control characters", s)
		}
	}
	return ""
}
