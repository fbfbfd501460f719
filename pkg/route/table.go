package route

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/mailpipe/mailpipe/pkg/events"
)

// Match is the result of resolving an address.
type Match struct {
	// Route is the matched route in canonical form. It is shared with the table: do not modify
	// its slices.
	Route events.Route
	// Kind is the kind of the route's pattern.
	Kind Kind
	// Tenant owns the mail: the route's tenant, or the address tag for a {tenant} pattern.
	Tenant string
	// Tag is the plus tag of the address (the lower-cased part of the local part after the first
	// "+") when the route matched the address by its base address (plus patterns, an exact route
	// for the base address, a catch-all); "" when the address has no tag or a route names the
	// whole address.
	Tag string
	// Senders is the route's sender policy; nil when the route has no allow or deny list (every
	// sender is accepted). It is the same pointer for every match of one route in one snapshot.
	Senders *SenderPolicy
}

type entry struct {
	route   events.Route
	pattern Pattern
	senders *SenderPolicy
}

// Snapshot is an immutable set of valid routes with no two competing for the same addresses,
// indexed for lookups. It is safe for concurrent use. The zero value is empty.
type Snapshot struct {
	byID map[string]*entry
	// byKey holds every entry under its pattern key (Pattern.key).
	byKey map[string]*entry
}

// NewSnapshot indexes routes. A route that is invalid (see [Canonical]) or whose pattern
// competes with another route's (the same address, or local+{tenant}@d next to local+*@d) is left
// out, and the returned error, a [*ValidationError] whose Problem.Index is the route's position in
// routes, says why. Of two competing routes the one updated first keeps the pattern (ties go to
// the smaller id): a duplicate written by mistake never takes mail away from a route in use. A
// later route with an id already seen replaces the earlier one.
//
// The snapshot is usable even when the error is not nil: it is what a follower of
// mail.routes.v1 serves while someone fixes the topic.
func NewSnapshot(routes []events.Route) (*Snapshot, error) {
	s := &Snapshot{byID: make(map[string]*entry, len(routes)), byKey: make(map[string]*entry, len(routes))}
	type cand struct {
		index int
		e     *entry
	}
	var ps []Problem
	last := make(map[string]int, len(routes))
	cands := make([]cand, 0, len(routes))
	for i, r := range routes {
		c, pat, rps := canonical(r, i)
		if r.ID == "" {
			rps = append(rps, Problem{Index: i, Field: "id", Detail: "must not be empty"})
		}
		if len(rps) > 0 {
			ps = append(ps, rps...)
			continue
		}
		if j, ok := last[c.ID]; ok {
			cands[j].e = nil // replaced by this later version
		}
		last[c.ID] = len(cands)
		cands = append(cands, cand{i, &entry{route: c, pattern: pat, senders: compileSenders(c.AllowSenders, c.DenySenders)}})
	}
	cands = slices.DeleteFunc(cands, func(c cand) bool { return c.e == nil })
	slices.SortFunc(cands, func(a, b cand) int {
		return cmp.Or(a.e.route.UpdatedAt.Compare(b.e.route.UpdatedAt), strings.Compare(a.e.route.ID, b.e.route.ID))
	})
	for _, c := range cands {
		k := c.e.pattern.key()
		if other, ok := s.byKey[k]; ok {
			ps = append(ps, Problem{Index: c.index, ID: c.e.route.ID, Field: "pattern", Detail: clash(c.e, other)})
			continue
		}
		s.byKey[k] = c.e
		s.byID[c.e.route.ID] = c.e
	}
	slices.SortFunc(ps, func(a, b Problem) int { return cmp.Compare(a.Index, b.Index) })
	return s, validationError(ps)
}

// clash describes why e cannot have its pattern while other has one with the same key.
func clash(e, other *entry) string {
	if e.pattern == other.pattern {
		return fmt.Sprintf("%q is already the pattern of route %q", e.pattern, other.route.ID)
	}
	return fmt.Sprintf("%q competes with route %q (%s): both match every tag of %s@%s",
		e.pattern, other.route.ID, other.pattern, e.pattern.Local, e.pattern.Domain)
}

// Len returns the number of routes.
func (s *Snapshot) Len() int {
	if s == nil {
		return 0
	}
	return len(s.byID)
}

// Get returns the route with id.
func (s *Snapshot) Get(id string) (events.Route, bool) {
	if s == nil {
		return events.Route{}, false
	}
	e, ok := s.byID[id]
	if !ok {
		return events.Route{}, false
	}
	return e.route, true
}

// Routes returns every route, sorted by domain, then from most to least specific pattern kind,
// then by pattern: the order in which an operator reads a routing table. The slice is the
// caller's; the routes' own slices are shared and must not be modified.
func (s *Snapshot) Routes() []events.Route {
	if s == nil {
		return nil
	}
	es := make([]*entry, 0, len(s.byID))
	for _, e := range s.byID {
		es = append(es, e)
	}
	slices.SortFunc(es, func(a, b *entry) int {
		return cmp.Or(strings.Compare(a.pattern.Domain, b.pattern.Domain), cmp.Compare(a.pattern.Kind, b.pattern.Kind),
			strings.Compare(a.pattern.Local, b.pattern.Local), strings.Compare(a.route.ID, b.route.ID))
	})
	out := make([]events.Route, len(es))
	for i, e := range es {
		out[i] = e.route
	}
	return out
}

// Resolve returns the route for the recipient addr (a bare address, angle brackets allowed) by
// the precedence in the package doc; false when no route matches.
func (s *Snapshot) Resolve(addr string) (Match, bool) {
	if s.Len() == 0 {
		return Match{}, false
	}
	local, domain, ok := splitAddress(addr)
	if !ok {
		return Match{}, false
	}
	if e, ok := s.byKey["exact:"+local+"@"+domain]; ok {
		return e.match(""), true
	}
	base, tag, tagged := strings.Cut(local, string(tagSeparator))
	if tagged && base != "" {
		if e, ok := s.byKey["plus:"+base+"@"+domain]; ok && tag != "" {
			if e.pattern.Kind == KindPlusAny {
				return e.match(tag), true
			}
			// A tag that is no tenant name (support+Re:@…, support+../x@…) gets no tenant of its
			// own; the mail falls through to the less specific routes.
			if ValidTenant(tag) {
				m := e.match(tag)
				m.Tenant = tag
				return m, true
			}
		}
		if e, ok := s.byKey["exact:"+base+"@"+domain]; ok {
			return e.match(tag), true
		}
	} else {
		tag = ""
	}
	if e, ok := s.byKey["all:"+domain]; ok {
		return e.match(tag), true
	}
	return Match{}, false
}

func (e *entry) match(tag string) Match {
	return Match{Route: e.route, Kind: e.pattern.Kind, Tenant: e.route.Tenant, Tag: tag, Senders: e.senders}
}

// Validate checks r as the new version of the route with its id (or as a new route) against the
// routes in s: it must be valid and its pattern must not compete with another route's. It
// returns r in canonical form (see [Canonical]); the error is a [*ValidationError] with Index -1.
func (s *Snapshot) Validate(r events.Route) (events.Route, error) {
	out, err := s.ValidateBatch([]events.Route{r})
	if err != nil {
		if ve := (*ValidationError)(nil); errors.As(err, &ve) {
			for i := range ve.Problems {
				ve.Problems[i].Index = -1
			}
		}
		return events.Route{}, err
	}
	return out[0], nil
}

// ValidateBatch checks routes as one change to s (an import): every route must be valid, no two
// routes of the batch may share an id or compete for addresses, and none may compete with a route
// of s that the batch does not replace (same id). It returns the routes in canonical form; the
// error is a [*ValidationError] listing every problem with the route's index in routes.
func (s *Snapshot) ValidateBatch(routes []events.Route) ([]events.Route, error) {
	out := make([]events.Route, len(routes))
	var ps []Problem
	ids := make(map[string]int, len(routes))
	keys := make(map[string]int, len(routes))
	pats := make([]Pattern, len(routes))
	for i, r := range routes {
		c, pat, rps := canonical(r, i)
		out[i], pats[i] = c, pat
		ps = append(ps, rps...)
		if c.ID == "" {
			continue
		}
		if j, ok := ids[c.ID]; ok {
			ps = append(ps, Problem{Index: i, ID: c.ID, Field: "id", Detail: fmt.Sprintf("%q is also the id of routes[%d]", c.ID, j)})
		} else {
			ids[c.ID] = i
		}
	}
	for i, c := range out {
		if pats[i].Kind == 0 {
			continue
		}
		k := pats[i].key()
		if j, ok := keys[k]; ok {
			ps = append(ps, Problem{
				Index: i, ID: c.ID, Field: "pattern",
				Detail: clash(&entry{route: c, pattern: pats[i]}, &entry{route: out[j], pattern: pats[j]}) + fmt.Sprintf(" (routes[%d])", j),
			})
			continue
		}
		keys[k] = i
		if s == nil {
			continue
		}
		// A route of s whose id the batch carries is being replaced, so its pattern is free.
		if other, ok := s.byKey[k]; ok && other.route.ID != c.ID {
			if _, replaced := ids[other.route.ID]; !replaced {
				ps = append(ps, Problem{Index: i, ID: c.ID, Field: "pattern", Detail: clash(&entry{route: c, pattern: pats[i]}, other)})
			}
		}
	}
	slices.SortStableFunc(ps, func(a, b Problem) int { return cmp.Compare(a.Index, b.Index) })
	if err := validationError(ps); err != nil {
		return nil, err
	}
	return out, nil
}

// Table is the route table services resolve recipients with: a [Snapshot] behind an atomic
// pointer. Readers never block and always see one whole snapshot; a writer (the mail.routes.v1
// follower) replaces it with Store. The zero value is an empty table, ready to use.
type Table struct {
	cur atomic.Pointer[Snapshot]
}

// Load returns the current snapshot; never nil.
func (t *Table) Load() *Snapshot {
	if s := t.cur.Load(); s != nil {
		return s
	}
	return &Snapshot{}
}

// Store makes s the current snapshot. s must not be modified afterwards (snapshots never are).
func (t *Table) Store(s *Snapshot) { t.cur.Store(s) }

// Resolve resolves addr in the current snapshot; see [Snapshot.Resolve].
func (t *Table) Resolve(addr string) (Match, bool) { return t.Load().Resolve(addr) }
