// Package console is the operators' web console of mailpipe, served on the admin port (by
// `mailpipe console`, and mounted by `mailpipe dev`) under /console/:
//
//	GET  /console/                        overview: per-stage consumer lag, topic throughput over
//	                                      the last 5 minutes, dead letters by stage and class,
//	                                      ingress-to-CRM latency percentiles
//	GET  /console/lookup?q=…              where a message is, found by ingress id, external id,
//	                                      Message-ID or sender address: a timeline of accepted,
//	                                      parsed, classified, enriched, per-target CRM outcomes
//	                                      (with object ids) and dead letters, with its trace id
//	GET  /console/dlq?stage=&class=&partition=&since=   dead letters, filtered
//	GET  /console/dlq/{partition}/{offset}               one dead letter: error and decoded value
//	POST /console/dlq/dry-run             what a replay of a selection would do (package
//	                                      dlq/replay, nothing written)
//	POST /console/dlq/replay              replay exactly the ranges the dry run showed
//
// Pages are server-rendered HTML (html/template); message bodies are never shown: the lookup
// index holds no body, and body fields of a decoded dead letter are redacted. Replays are
// POST-only, need the console's form token and a same-origin request, and are audited like
// `mailpipe dlq replay` (name console-<time>, operator from a configurable header).
//
// The lookup index is built by a [Tracker] that reads the pipeline topics from their start
// (read_committed, no consumer group) and keeps the latest messages in memory; run it with
// [Console.Actor]. Like the rest of the admin port, the console has no authentication of its
// own: put it behind the operators' access proxy.
package console

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/admin"
	"github.com/mailpipe/mailpipe/pkg/app"
	dlqreplay "github.com/mailpipe/mailpipe/pkg/dlq/replay"
	"github.com/mailpipe/mailpipe/pkg/failure"
	"github.com/mailpipe/mailpipe/pkg/kafka"
)

// Path is where the console is mounted.
const Path = "/console/"

// DefaultOperatorHeader is the request header naming the operator for the replay audit, as set
// by an authenticating proxy in front of the admin port.
const DefaultOperatorHeader = "X-Forwarded-User"

// maxListed bounds the dead letters one list page shows (the newest).
const maxListed = 500

// Config configures a Console. NewClient and Decoder are required.
type Config struct {
	// NewClient makes Kafka clients; the options it gets are added to the connection config.
	NewClient dlqreplay.NewClient
	// Decoder decodes record values (*serde.Codec).
	Decoder Decoder
	// DLQTopic and AuditTopic default to kafka.TopicDLQ and kafka.TopicDLQAudit.
	DLQTopic, AuditTopic string
	// Stages whose lag the overview shows; default DefaultStages.
	Stages []Stage
	// Capacity of the lookup index in messages; default DefaultCapacity.
	Capacity int
	// OperatorHeader names the operator of a replay; default DefaultOperatorHeader. Without
	// it the operator is "console".
	OperatorHeader string
	// RequestTimeout bounds the Kafka work of one page; default 30 s (a replay: 10 min).
	RequestTimeout time.Duration
	Log            *slog.Logger
	Now            func() time.Time
}

// Console serves the console pages. Create it with New.
type Console struct {
	cfg     Config
	tracker *Tracker
	pages   map[string]*template.Template
	token   string
	mux     *http.ServeMux
}

//go:embed templates/*.html
var templateFS embed.FS

// New checks cfg and parses the pages.
func New(cfg Config) (*Console, error) {
	if cfg.NewClient == nil || cfg.Decoder == nil {
		return nil, errors.New("console: NewClient and Decoder are required")
	}
	if cfg.DLQTopic == "" {
		cfg.DLQTopic = kafka.TopicDLQ
	}
	if cfg.AuditTopic == "" {
		cfg.AuditTopic = kafka.TopicDLQAudit
	}
	if len(cfg.Stages) == 0 {
		cfg.Stages = DefaultStages()
	}
	if cfg.OperatorHeader == "" {
		cfg.OperatorHeader = DefaultOperatorHeader
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 30 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	tok := make([]byte, 32)
	if _, err := rand.Read(tok); err != nil {
		return nil, fmt.Errorf("console: making the form token: %w", err)
	}
	c := &Console{cfg: cfg, tracker: NewTracker(cfg.Decoder, cfg.Capacity, cfg.Log), token: hex.EncodeToString(tok), pages: map[string]*template.Template{}}
	funcs := template.FuncMap{
		"ts":   func(t time.Time) string { return fmtTime(t) },
		"ms":   func(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) + " ms" },
		"rate": func(f float64) string { return strconv.FormatFloat(f, 'f', 2, 64) },
		"join": strings.Join,
	}
	for _, page := range []string{"overview", "lookup", "dlq", "letter", "dryrun", "replayed", "error"} {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+page+".html")
		if err != nil {
			return nil, fmt.Errorf("console: parsing the %s page: %w", page, err)
		}
		c.pages[page] = t
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /console/{$}", c.serveOverview)
	mux.HandleFunc("GET /console/lookup", c.serveLookup)
	mux.HandleFunc("GET /console/dlq", c.serveDLQ)
	mux.HandleFunc("GET /console/dlq/{partition}/{offset}", c.serveLetter)
	mux.HandleFunc("POST /console/dlq/dry-run", c.serveDryRun)
	mux.HandleFunc("POST /console/dlq/replay", c.serveReplay)
	c.mux = mux
	return c, nil
}

// Handler serves the console pages under Path.
func (c *Console) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		c.mux.ServeHTTP(w, r)
	})
}

// Mount serves the console on an admin server, under Path.
func (c *Console) Mount(s *admin.Server) { s.Handle(Path, c.Handler()) }

// Tracker is the console's lookup index.
func (c *Console) Tracker() *Tracker { return c.tracker }

// Actor runs the tracker in an app.Run group.
func (c *Console) Actor() app.Actor {
	return app.Actor{Name: "console-tracker", Run: func(ctx context.Context) error {
		return c.tracker.Run(ctx, func(opts ...kgo.Opt) (*kgo.Client, error) { return c.cfg.NewClient(opts...) })
	}}
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, page string, data map[string]any) {
	data["Token"] = c.token
	data["Page"] = page
	var b bytes.Buffer
	if err := c.pages[page].Execute(&b, data); err != nil {
		c.cfg.Log.ErrorContext(r.Context(), "console: rendering a page failed", "page", page, "err", err)
		http.Error(w, "rendering the page failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

func (c *Console) fail(w http.ResponseWriter, r *http.Request, status int, title string, err error) {
	c.render(w, r, status, "error", map[string]any{"Title": title, "Error": err.Error()})
}

func (c *Console) serveOverview(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), c.cfg.RequestTimeout)
	defer cancel()
	o := c.overview(ctx)
	c.render(w, r, http.StatusOK, "overview", map[string]any{"Title": "Overview", "O": o})
}

func (c *Console) serveLookup(w http.ResponseWriter, r *http.Request) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	data := map[string]any{"Title": "Message lookup", "Q": q, "Tracked": c.tracker.Len()}
	if q != "" {
		data["Journeys"] = c.tracker.Lookup(q)
		data["Searched"] = true
	}
	c.render(w, r, http.StatusOK, "lookup", data)
}

// selection is the DLQ selection of the list page and the replay forms.
type selection struct {
	Stage, Class, Partition, Since string
}

func selectionFrom(v url.Values) selection {
	return selection{
		Stage: strings.TrimSpace(v.Get("stage")), Class: strings.TrimSpace(v.Get("class")),
		Partition: strings.TrimSpace(v.Get("partition")), Since: strings.TrimSpace(v.Get("since")),
	}
}

// filter turns the selection into a replay filter; from and to (exclusive, 0 for the end) bound
// the offsets and need a partition.
func (s selection) filter(now time.Time, from, to int64) (dlqreplay.Filter, error) {
	var f dlqreplay.Filter
	if s.Partition != "" {
		p, err := strconv.ParseInt(s.Partition, 10, 32)
		if err != nil || p < 0 {
			return f, fmt.Errorf("partition %q is not a partition number", s.Partition)
		}
		f.Partitions = []int32{int32(p)}
	} else if from > 0 || to > 0 {
		return f, errors.New("an offset range needs a partition")
	}
	f.From, f.To = from, to
	for _, st := range strings.Split(s.Stage, ",") {
		if st = strings.TrimSpace(st); st != "" {
			f.Stages = append(f.Stages, st)
		}
	}
	for _, cl := range strings.Split(s.Class, ",") {
		if cl = strings.TrimSpace(cl); cl != "" {
			f.Classes = append(f.Classes, failure.Class(cl))
		}
	}
	if s.Since != "" {
		if t, err := time.Parse(time.RFC3339, s.Since); err == nil {
			f.Since = t.UTC()
		} else if d, err := time.ParseDuration(s.Since); err == nil && d > 0 {
			f.Since = now.Add(-d).UTC()
		} else {
			return f, fmt.Errorf("since %q is neither an RFC 3339 time nor a positive duration like 6h", s.Since)
		}
	}
	return f, f.Validate()
}

// listed is one dead letter of the list page.
type listed struct {
	Partition   int32
	Offset      int64
	Key         string
	Stage       string
	Class       string
	Message     string
	Original    string
	LastFailure time.Time
	ReplayCount int
	Action      dlqreplay.Action
	Err         string
}

func (c *Console) serveDLQ(w http.ResponseWriter, r *http.Request) {
	sel := selectionFrom(r.URL.Query())
	data := map[string]any{"Title": "Dead letters", "Sel": sel}
	f, err := sel.filter(c.cfg.Now(), 0, 0)
	if err != nil {
		data["Err"] = err.Error()
		c.render(w, r, http.StatusBadRequest, "dlq", data)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), c.cfg.RequestTimeout)
	defer cancel()
	var items []listed
	a, err := dlqreplay.Run(ctx, c.cfg.NewClient, dlqreplay.Options{
		Topic: c.cfg.DLQTopic, AuditTopic: c.cfg.AuditTopic, Filter: f, DryRun: true, Decoder: c.cfg.Decoder, Now: c.cfg.Now,
		Each: func(it dlqreplay.Item) {
			if it.Action == dlqreplay.ActionFiltered {
				return
			}
			items = append(items, toListed(it))
		},
	})
	if errors.Is(err, dlqreplay.ErrNoTopic) {
		err = nil
	}
	if err != nil {
		data["Err"] = err.Error()
	}
	slices.SortStableFunc(items, func(x, y listed) int { return y.LastFailure.Compare(x.LastFailure) })
	data["Total"] = len(items)
	if len(items) > maxListed {
		items = items[:maxListed]
	}
	data["Items"], data["Audit"] = items, a
	c.render(w, r, http.StatusOK, "dlq", data)
}

func toListed(it dlqreplay.Item) listed {
	l := listed{
		Partition: it.Partition, Offset: it.Offset, Key: string(it.Key), Action: it.Action,
		Stage: it.Info.Stage, Class: string(it.Info.Class), Message: it.Info.Message,
		LastFailure: it.Info.LastFailure, ReplayCount: it.Info.ReplayCount,
	}
	if it.Info.OriginalTopic != "" {
		l.Original = fmt.Sprintf("%s[%d]@%d", it.Info.OriginalTopic, it.Info.OriginalPartition, it.Info.OriginalOffset)
	}
	if it.Err != nil {
		l.Err = it.Err.Error()
	}
	return l
}

func (c *Console) serveLetter(w http.ResponseWriter, r *http.Request) {
	p, err1 := strconv.ParseInt(r.PathValue("partition"), 10, 32)
	o, err2 := strconv.ParseInt(r.PathValue("offset"), 10, 64)
	if err1 != nil || err2 != nil || p < 0 || o < 0 {
		c.fail(w, r, http.StatusBadRequest, "Dead letter", errors.New("partition and offset must be non-negative numbers"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), c.cfg.RequestTimeout)
	defer cancel()
	l, err := dlqreplay.Show(ctx, c.cfg.NewClient, c.cfg.DLQTopic, int32(p), o, c.cfg.Decoder, 0)
	if err != nil {
		status := http.StatusBadGateway
		if errors.Is(err, dlqreplay.ErrNoRecord) {
			status = http.StatusNotFound
		}
		c.fail(w, r, status, "Dead letter", err)
		return
	}
	if l.TraceID == "" {
		l.TraceID = traceID(&kgo.Record{Headers: []kgo.RecordHeader{{Key: "traceparent", Value: []byte(l.Headers["traceparent"])}}})
	}
	l.Value = redact(l.Value)
	if l.ValueHex != "" {
		l.ValueHex = fmt.Sprintf("[%d bytes not shown]", len(l.ValueHex)/2)
	}
	value, _ := json.MarshalIndent(l.Value, "", "  ")
	var journeys []Journey
	if id := genericFields(l.Value).id; id != "" {
		journeys = c.tracker.Lookup(id)
	}
	c.render(w, r, http.StatusOK, "letter", map[string]any{
		"Title": fmt.Sprintf("Dead letter %d/%d", p, o), "L": l, "Value": string(value), "Journeys": journeys,
		"Sel": selection{Partition: strconv.FormatInt(p, 10)}, "From": o, "To": o + 1,
	})
}

// bodyFields are value fields that hold message content; the console never shows them.
var bodyFields = map[string]bool{"raw": true, "text": true, "html": true, "html_sanitized": true, "stripped_text": true}

// redact replaces message content in a generically decoded value by its size.
func redact(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			if bodyFields[k] && e != nil {
				out[k] = fmt.Sprintf("[redacted: %d bytes]", size(e))
				continue
			}
			out[k] = redact(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = redact(e)
		}
		return out
	}
	return v
}

func size(v any) int {
	switch x := v.(type) {
	case string:
		return len(x)
	case []byte:
		return len(x)
	case map[string]any: // a union decoded as {"type": value}
		n := 0
		for _, e := range x {
			n += size(e)
		}
		return n
	}
	return 0
}

// checkPost guards the state-changing forms: the form token must match and a browser's
// Origin / Sec-Fetch-Site must say the request comes from the console itself.
func (c *Console) checkPost(r *http.Request) error {
	if err := r.ParseForm(); err != nil {
		return fmt.Errorf("reading the form: %w", err)
	}
	if subtle.ConstantTimeCompare([]byte(r.PostForm.Get("token")), []byte(c.token)) != 1 {
		return errors.New("the form token is missing or stale: reload the page and try again")
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return fmt.Errorf("cross-site request refused (Sec-Fetch-Site %s)", site)
	}
	if origin := r.Header.Get("Origin"); origin != "" && origin != "null" {
		u, err := url.Parse(origin)
		if err != nil || u.Host != r.Host {
			return fmt.Errorf("cross-origin request refused (Origin %s)", origin)
		}
	}
	return nil
}

func formInt(v url.Values, k string) int64 {
	n, _ := strconv.ParseInt(v.Get(k), 10, 64)
	return max(n, 0)
}

func (c *Console) serveDryRun(w http.ResponseWriter, r *http.Request) {
	if err := c.checkPost(r); err != nil {
		c.fail(w, r, http.StatusForbidden, "Replay", err)
		return
	}
	sel := selectionFrom(r.PostForm)
	now := c.cfg.Now()
	f, err := sel.filter(now, formInt(r.PostForm, "from"), formInt(r.PostForm, "to"))
	if err != nil {
		c.fail(w, r, http.StatusBadRequest, "Replay", err)
		return
	}
	if !f.Since.IsZero() {
		sel.Since = f.Since.Format(time.RFC3339Nano) // the confirmation replays the same window
	}
	ctx, cancel := context.WithTimeout(r.Context(), c.cfg.RequestTimeout)
	defer cancel()
	var sample []listed
	a, err := dlqreplay.Run(ctx, c.cfg.NewClient, dlqreplay.Options{
		Topic: c.cfg.DLQTopic, AuditTopic: c.cfg.AuditTopic, Filter: f, DryRun: true, Decoder: c.cfg.Decoder, Now: c.cfg.Now,
		Each: func(it dlqreplay.Item) {
			if it.Action != dlqreplay.ActionFiltered && len(sample) < 50 {
				sample = append(sample, toListed(it))
			}
		},
	})
	if err != nil {
		c.fail(w, r, http.StatusBadGateway, "Replay dry run", err)
		return
	}
	var ranges []string
	for _, pr := range a.Partitions {
		if pr.Replayed > 0 {
			ranges = append(ranges, fmt.Sprintf("%d:%d:%d", pr.Partition, pr.From, pr.To))
		}
	}
	c.render(w, r, http.StatusOK, "dryrun", map[string]any{
		"Title": "Replay dry run", "Sel": sel, "Audit": a, "Sample": sample,
		"Ranges": strings.Join(ranges, ","), "Name": "console-" + now.UTC().Format("20060102T150405Z"),
	})
}

// partRange is one partition's offsets [From, To) of a confirmed replay.
type partRange struct {
	Partition int32
	From, To  int64
}

func parseRanges(s string) ([]partRange, error) {
	var out []partRange
	for _, part := range strings.Split(s, ",") {
		if part == "" {
			continue
		}
		f := strings.Split(part, ":")
		if len(f) != 3 {
			return nil, fmt.Errorf("range %q is not partition:from:to", part)
		}
		p, e1 := strconv.ParseInt(f[0], 10, 32)
		from, e2 := strconv.ParseInt(f[1], 10, 64)
		to, e3 := strconv.ParseInt(f[2], 10, 64)
		if errors.Join(e1, e2, e3) != nil || p < 0 || from < 0 || to <= from {
			return nil, fmt.Errorf("range %q is not partition:from:to with from < to", part)
		}
		out = append(out, partRange{Partition: int32(p), From: from, To: to})
	}
	return out, nil
}

func (c *Console) operator(r *http.Request) string {
	op := strings.TrimSpace(r.Header.Get(c.cfg.OperatorHeader))
	if op == "" || len(op) > 128 {
		return "console"
	}
	return op
}

func (c *Console) serveReplay(w http.ResponseWriter, r *http.Request) {
	if err := c.checkPost(r); err != nil {
		c.fail(w, r, http.StatusForbidden, "Replay", err)
		return
	}
	if r.PostForm.Get("confirm") != "yes" {
		c.fail(w, r, http.StatusBadRequest, "Replay", errors.New("a replay needs the confirmation of its dry run"))
		return
	}
	name := strings.TrimSpace(r.PostForm.Get("name"))
	if !strings.HasPrefix(name, "console-") || len(name) > 64 || strings.ContainsAny(name, " \t\r\n/") {
		c.fail(w, r, http.StatusBadRequest, "Replay", fmt.Errorf("replay name %q is not a console-<time> name", name))
		return
	}
	ranges, err := parseRanges(r.PostForm.Get("ranges"))
	if err != nil {
		c.fail(w, r, http.StatusBadRequest, "Replay", err)
		return
	}
	sel := selectionFrom(r.PostForm)
	sel.Partition = ""
	ctx, cancel := context.WithTimeout(r.Context(), max(c.cfg.RequestTimeout, 10*time.Minute))
	defer cancel()
	op := c.operator(r)
	var audits []dlqreplay.Audit
	var total dlqreplay.Counts
	var runErr error
	for _, pr := range ranges {
		f, err := sel.filter(c.cfg.Now(), 0, 0)
		if err != nil {
			c.fail(w, r, http.StatusBadRequest, "Replay", err)
			return
		}
		f.Partitions, f.From, f.To = []int32{pr.Partition}, pr.From, pr.To
		n := name
		if len(ranges) > 1 {
			n = fmt.Sprintf("%s-p%d", name, pr.Partition)
		}
		a, err := dlqreplay.Run(ctx, c.cfg.NewClient, dlqreplay.Options{
			Topic: c.cfg.DLQTopic, AuditTopic: c.cfg.AuditTopic, Name: n, Operator: op, Filter: f,
			Decoder: c.cfg.Decoder, Now: c.cfg.Now,
		})
		audits = append(audits, a)
		total.Replayed += a.Replayed
		total.Looping += a.Looping
		total.Filtered += a.Filtered
		total.Invalid += a.Invalid
		if err != nil {
			runErr = err
			break
		}
	}
	c.cfg.Log.InfoContext(ctx, "console replay", "name", name, "operator", op, "ranges", r.PostForm.Get("ranges"), "replayed", total.Replayed, "err", runErr)
	data := map[string]any{"Title": "Replay result", "Name": name, "Operator": op, "Audits": audits, "Total": total}
	status := http.StatusOK
	if runErr != nil {
		data["Err"] = runErr.Error()
		status = http.StatusBadGateway
	}
	c.render(w, r, status, "replayed", data)
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05.000Z")
}
