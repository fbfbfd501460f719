package postgres_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mailpipe/mailpipe/pkg/crm"
	"github.com/mailpipe/mailpipe/pkg/crm/crmtest"
	"github.com/mailpipe/mailpipe/pkg/crm/postgres"
	"github.com/mailpipe/mailpipe/pkg/crm/postgres/pgtest"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/failure"
)

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// target is a connector on a fresh database and a pool to look at that database.
type target struct {
	c  *postgres.Connector
	db *pgxpool.Pool
}

func newTarget(t testing.TB, mutate func(*postgres.Config)) target {
	t.Helper()
	dsn := pgtest.Database(t)
	cfg := postgres.Config{DSN: dsn, Timeout: 20 * time.Second}
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := postgres.New(cfg, discard())
	if err != nil {
		t.Fatal(err)
	}
	db, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	// Cleanups run last-registered first: both pools close before the database is dropped.
	t.Cleanup(func() {
		db.Close()
		_ = c.Close(context.Background())
	})
	return target{c: c, db: db}
}

// count returns the result of a count(*) query.
func (tg target) count(t testing.TB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := tg.db.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func (tg target) upsert(t testing.TB, rec *events.Enriched) crm.Result {
	t.Helper()
	res, err := tg.c.Upsert(t.Context(), rec)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestConformance(t *testing.T) {
	crmtest.Run(t, func(t *testing.T) crmtest.Target {
		tg := newTarget(t, nil)
		return crmtest.Target{
			Connector: tg.c,
			Objects: func(externalID string) int {
				// The suite asks before the first upsert too, when there is no table yet.
				var n int
				err := tg.db.QueryRow(context.Background(),
					"SELECT count(*) FROM message WHERE external_id = $1", externalID).Scan(&n)
				if err != nil && strings.Contains(err.Error(), "does not exist") {
					return 0
				}
				if err != nil {
					t.Fatal(err)
				}
				return n
			},
		}
	})
}

func TestOutcomes(t *testing.T) {
	tg := newTarget(t, nil)
	msg := crmtest.Message("outcomes")

	first := tg.upsert(t, msg)
	again := tg.upsert(t, crmtest.Message("outcomes"))
	changed := crmtest.Message("outcomes")
	changed.Classification.LeadScore = 40
	changed.Enrichment.Company.Industry = "Software"
	third := tg.upsert(t, changed)
	fourth := tg.upsert(t, changed)

	for i, tt := range []struct {
		res  crm.Result
		want string
	}{{first, crm.OutcomeCreated}, {again, crm.OutcomeUnchanged}, {third, crm.OutcomeUpdated}, {fourth, crm.OutcomeUnchanged}} {
		if tt.res.Outcome != tt.want || tt.res.Attempts != 1 {
			t.Errorf("upsert %d: outcome %s, attempts %d; want %s, 1", i+1, tt.res.Outcome, tt.res.Attempts, tt.want)
		}
		if fmt.Sprint(tt.res.ObjectIDs) != fmt.Sprint(first.ObjectIDs) {
			t.Errorf("upsert %d: ids %v, want %v", i+1, tt.res.ObjectIDs, first.ObjectIDs)
		}
	}
	for _, k := range []string{postgres.ObjectCompany, postgres.ObjectContact, postgres.ObjectLead, postgres.ObjectMessage} {
		if first.ObjectIDs[k] == "" {
			t.Errorf("ObjectIDs %v lacks %s", first.ObjectIDs, k)
		}
	}
	var industry string
	var score float64
	if err := tg.db.QueryRow(t.Context(), `SELECT c.industry, l.score FROM company c JOIN lead l ON l.company_id = c.id`).Scan(&industry, &score); err != nil {
		t.Fatal(err)
	}
	if industry != "Software" || score != 40 {
		t.Errorf("industry %q, lead score %v; want the update applied", industry, score)
	}
}

func TestReplayWritesOneRowOfEachKind(t *testing.T) {
	tg := newTarget(t, nil)
	for range 3 {
		tg.upsert(t, crmtest.Message("replay"))
	}
	for table, want := range map[string]int{"company": 1, "contact": 1, "lead": 1, "message": 1, "event_log": 2} {
		if n := tg.count(t, "SELECT count(*) FROM "+table); n != want {
			t.Errorf("%s rows = %d, want %d", table, n, want)
		}
	}
	var types string
	if err := tg.db.QueryRow(t.Context(), `SELECT string_agg(type || '/' || direction, ',' ORDER BY type) FROM event_log`).Scan(&types); err != nil {
		t.Fatal(err)
	}
	if types != "lead.created/internal,message.received/inbound" {
		t.Errorf("events = %s", types)
	}
}

func TestMessageRow(t *testing.T) {
	tg := newTarget(t, nil)
	msg := crmtest.Message("row")
	msg.Message.Subject = "Preis\x00liste \xff"
	msg.Enrichment.Contact.Consent = map[string]bool{"marketing": true}
	tg.upsert(t, msg)

	var (
		subject, direction, kind, from, queue, attachments, consent string
		to                                                          []string
		sla                                                         int
	)
	err := tg.db.QueryRow(t.Context(), `
		SELECT m.subject, m.direction, m.kind, m.from_address, m.to_addresses, m.queue, m.sla_minutes,
		       m.attachments::text, c.consent::text
		FROM message m JOIN contact c ON c.id = m.contact_id`).
		Scan(&subject, &direction, &kind, &from, &to, &queue, &sla, &attachments, &consent)
	if err != nil {
		t.Fatal(err)
	}
	if subject != "Preisliste \uFFFD" {
		t.Errorf("subject = %q, want NUL dropped and the invalid byte replaced", subject)
	}
	if direction != "inbound" || kind != "human" || from != "a@example.com" || queue != "sales" || sla != 60 {
		t.Errorf("row = %s %s %s %s %d", direction, kind, from, queue, sla)
	}
	if len(to) != 1 || to[0] != "support+acme@in.example.com" {
		t.Errorf("to = %v", to)
	}
	if !strings.Contains(attachments, `"filename": "a.pdf"`) || !strings.Contains(attachments, `"blob_ref": "file:///var/lib/mailpipe/blobs/att/1"`) {
		t.Errorf("attachments = %s", attachments)
	}
	if consent != `{"marketing": true}` {
		t.Errorf("consent = %s", consent)
	}
}

// at returns a message of thread in tenant acme, from sender, received at the given minute of
// 2025-03-03 (UTC), with the sales queue's 60-minute SLA.
func at(seed, thread, sender string, minute int, kind string) *events.Enriched {
	m := crmtest.Message(seed)
	m.Message.ThreadKey = thread
	m.Message.ReceivedAt = time.Date(2025, 3, 3, 9, 0, 0, 0, time.UTC).Add(time.Duration(minute) * time.Minute)
	m.Message.From = &events.Address{Address: sender, Name: sender}
	m.Enrichment.Contact = &events.Contact{Email: sender}
	m.Classification.Kind = kind
	return m
}

func TestThreadsAndKinds(t *testing.T) {
	tg := newTarget(t, nil)
	// An auto-reply opens no lead, even as the first message of its thread …
	autoReply := at("ooo", "t1", "ann@example.com", 0, "auto_reply")
	if res := tg.upsert(t, autoReply); res.ObjectIDs[postgres.ObjectLead] != "" {
		t.Errorf("auto-reply ObjectIDs = %v, want no lead", res.ObjectIDs)
	}
	// … a human message does, and its reply in the same thread continues it.
	first := tg.upsert(t, at("m1", "t1", "ann@example.com", 5, "human"))
	reply := at("m2", "t1", "ann@example.com", 30, "human")
	reply.Classification.LeadScore = 50
	second := tg.upsert(t, reply)
	other := tg.upsert(t, at("m3", "t2", "ann@example.com", 40, "human"))
	// A replayed auto-reply now finds the lead of its thread.
	tg.upsert(t, autoReply)

	if first.ObjectIDs[postgres.ObjectLead] != second.ObjectIDs[postgres.ObjectLead] || first.ObjectIDs[postgres.ObjectLead] == other.ObjectIDs[postgres.ObjectLead] {
		t.Errorf("leads = %s, %s, %s; want one per thread", first.ObjectIDs[postgres.ObjectLead], second.ObjectIDs[postgres.ObjectLead], other.ObjectIDs[postgres.ObjectLead])
	}
	if first.ObjectIDs[postgres.ObjectContact] != other.ObjectIDs[postgres.ObjectContact] {
		t.Error("one sender has two contacts")
	}
	var firstAt, lastAt time.Time
	var score float64
	if err := tg.db.QueryRow(t.Context(), `SELECT first_message_at, last_message_at, score FROM lead WHERE thread_key = 't1'`).Scan(&firstAt, &lastAt, &score); err != nil {
		t.Fatal(err)
	}
	if firstAt.Minute() != 5 || lastAt.Minute() != 30 || score != 50 {
		t.Errorf("lead t1: first %v, last %v, score %v", firstAt, lastAt, score)
	}
	if n := tg.count(t, `SELECT count(*) FROM message WHERE thread_key = 't1' AND lead_id IS NULL`); n != 0 {
		t.Errorf("%d messages of t1 have no lead after the replay", n)
	}
	if n := tg.count(t, `SELECT count(*) FROM event_log WHERE lead_id IS NULL`); n != 0 {
		t.Errorf("%d events have no lead after the replay", n)
	}
}

func TestFreeMailHasNoCompany(t *testing.T) {
	tg := newTarget(t, nil)
	m := crmtest.Message("free")
	m.Enrichment.Company = &events.Company{Domain: "gmail.com", FreeMail: true}
	res := tg.upsert(t, m)
	if _, ok := res.ObjectIDs[postgres.ObjectCompany]; ok || tg.count(t, "SELECT count(*) FROM company") != 0 {
		t.Errorf("a free-mail domain became a company: %v", res.ObjectIDs)
	}
}

// ttfrQuery is the documented per-queue summary over the message_first_response view.
const ttfrQuery = `
SELECT queue,
       count(*)                                                          AS lead_messages,
       count(first_response_at)                                          AS answered,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY time_to_first_response) AS p50,
       count(*) FILTER (WHERE sla_breached)                              AS breached
FROM message_first_response
WHERE tenant = $1
GROUP BY queue
ORDER BY queue`

func TestTimeToFirstResponse(t *testing.T) {
	tg := newTarget(t, func(c *postgres.Config) { c.OutboundDomains = []string{"acme.example"} })
	// Lead A (thread ta): a question at 10:00, an auto-reply of ours would not count, a reply
	// from sales copied to the pipeline at 10:20; a follow-up at 11:00 answered by a call that
	// another system logs at 13:00. An outbound event before a message does not answer it.
	// Lead B (thread tb): one unanswered question at 10:00.
	tg.upsert(t, at("a1", "ta", "ann@example.com", 60, "human"))
	tg.upsert(t, at("a-ooo", "ta", "ann@example.com", 65, "auto_reply"))
	replyCopy := at("a-reply", "ta", "sales@acme.example", 80, "human")
	replyCopy.Enrichment.Contact = nil
	replyCopy.Enrichment.Company = &events.Company{Domain: "acme.example", Name: "Acme"}
	res := tg.upsert(t, replyCopy)
	tg.upsert(t, at("a2", "ta", "ann@example.com", 120, "human"))
	tg.upsert(t, at("b1", "tb", "bob@example.org", 60, "human"))
	_, err := tg.db.Exec(t.Context(), `
		INSERT INTO event_log (tenant, lead_id, type, direction, actor, occurred_at, dedupe_key)
		SELECT 'acme', id, 'note.added', 'outbound', 'crm', '2025-03-03 08:00Z'::timestamptz, 'early' FROM lead WHERE thread_key = 'ta'
		UNION ALL
		SELECT 'acme', id, 'call.logged', 'outbound', 'crm', '2025-03-03 13:00Z'::timestamptz, 'call-1' FROM lead WHERE thread_key = 'ta'`)
	if err != nil {
		t.Fatal(err)
	}

	// The copied reply is an outbound message of lead A: no contact or company of its own.
	if res.ObjectIDs[postgres.ObjectCompany] != "" || tg.count(t, `SELECT count(*) FROM message WHERE direction = 'outbound' AND lead_id IS NOT NULL`) != 1 {
		t.Errorf("outbound copy: ids %v", res.ObjectIDs)
	}
	if n := tg.count(t, `SELECT count(*) FROM contact WHERE email LIKE '%acme.example'`); n != 0 {
		t.Errorf("the team's address became %d contacts", n)
	}

	rows, err := tg.db.Query(t.Context(), `
		SELECT external_id, coalesce(extract(epoch FROM time_to_first_response)::int, -1), sla_breached
		FROM message_first_response ORDER BY received_at, external_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[string]string{}
	for rows.Next() {
		var id string
		var secs int
		var breached *bool
		if err := rows.Scan(&id, &secs, &breached); err != nil {
			t.Fatal(err)
		}
		got[id] = fmt.Sprintf("%ds breached=%v", secs, *breached)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		crmtest.Message("a1").Message.ExternalID: "1200s breached=false", // 10:00 → reply 10:20
		crmtest.Message("a2").Message.ExternalID: "7200s breached=true",  // 11:00 → call 13:00, SLA 60 min
		crmtest.Message("b1").Message.ExternalID: "-1s breached=true",    // unanswered for a year
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("message_first_response =\n%v\nwant\n%v", got, want)
	}

	var queue string
	var messages, answered, breached int
	var p50 time.Duration
	if err := tg.db.QueryRow(t.Context(), ttfrQuery, "acme").Scan(&queue, &messages, &answered, &p50, &breached); err != nil {
		t.Fatal(err)
	}
	// The median ignores the unanswered message: between 20 minutes and 2 hours.
	if queue != "sales" || messages != 3 || answered != 2 || p50 != 70*time.Minute || breached != 2 {
		t.Errorf("summary = %s %d %d %v %d; want sales 3 2 1h10m0s 2", queue, messages, answered, p50, breached)
	}
}

func TestMigrations(t *testing.T) {
	t.Run("concurrent starts apply each migration once", func(t *testing.T) {
		dsn := pgtest.Database(t)
		const n = 6
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				c, err := postgres.New(postgres.Config{DSN: dsn, Schema: "leads"}, discard())
				if err != nil {
					t.Error(err)
					return
				}
				defer func() { _ = c.Close(context.Background()) }()
				if err := c.Migrate(t.Context()); err != nil {
					t.Error(err)
				}
				if err := c.Migrate(t.Context()); err != nil { // a no-op
					t.Error(err)
				}
			})
		}
		wg.Wait()
		db, err := pgxpool.New(t.Context(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		tg := target{db: db}
		if got := tg.count(t, `SELECT count(*) FROM leads.schema_migrations WHERE version = 1 AND name = '0001_lead_capture.sql'`); got != 1 {
			t.Errorf("schema_migrations rows for version 1 = %d, want 1", got)
		}
		if got := tg.count(t, `SELECT count(*) FROM information_schema.tables WHERE table_schema = 'leads'`); got != 7 {
			t.Errorf("objects in schema leads = %d, want 5 tables, schema_migrations and the view", got)
		}
		if got := tg.count(t, `SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'`); got != 0 {
			t.Errorf("objects in schema public = %d, want 0", got)
		}
	})

	t.Run("two schemas in one database are independent", func(t *testing.T) {
		dsn := pgtest.Database(t)
		for _, schema := range []string{"tenant_a", "tenant_b"} {
			c, err := postgres.New(postgres.Config{DSN: dsn, Schema: schema}, discard())
			if err != nil {
				t.Fatal(err)
			}
			res, err := c.Upsert(t.Context(), crmtest.Message("same"))
			_ = c.Close(context.Background())
			if err != nil || res.Outcome != crm.OutcomeCreated {
				t.Fatalf("schema %s: %v, %v; want created", schema, res.Outcome, err)
			}
		}
	})
}

func TestErrorClassification(t *testing.T) {
	dsn := pgtest.DSN(t)
	for _, tt := range []struct {
		name string
		dsn  string
		msg  func(*events.Enriched)
		want failure.Class
	}{
		{"wrong password is auth", strings.Replace(dsn, "mailpipe:mailpipe@", "mailpipe:wrong@", 1), nil, failure.Auth},
		{"unknown database is a retryable server error", pgtest.WithDatabase(t, dsn, "no_such_db"), nil, failure.CRM5xx},
		{"no server is retryable", "postgres://mailpipe:mailpipe@127.0.0.1:1/x?sslmode=disable&connect_timeout=2", nil, failure.Unknown},
		{"no external id is schema", dsn, func(m *events.Enriched) { m.Message.ExternalID = "" }, failure.Schema},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if !strings.Contains(tt.dsn, "mailpipe:mailpipe@") && !strings.Contains(tt.dsn, ":wrong@") {
				t.Fatalf("test DSN %s has an unexpected form", pgtest.EnvDSN)
			}
			c, err := postgres.New(postgres.Config{DSN: tt.dsn, Timeout: 5 * time.Second}, discard())
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = c.Close(context.Background()) }()
			msg := crmtest.Message("fault")
			if tt.msg != nil {
				tt.msg(msg)
			}
			_, err = c.Upsert(t.Context(), msg)
			if got := failure.Classify(err); got != tt.want {
				t.Fatalf("class = %q (err %v), want %q", got, err, tt.want)
			}
			if strings.Contains(fmt.Sprint(err), ":wrong@") || strings.Contains(fmt.Sprint(err), "password=") {
				t.Errorf("error %v leaks the password", err)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  postgres.Config
		want []string
	}{
		{"url", postgres.Config{DSN: "postgres://u:p@h/db"}, nil},
		{"key value", postgres.Config{DSN: "host=h user=u dbname=db", Schema: "leads_2"}, nil},
		{"missing dsn", postgres.Config{}, []string{"dsn is required"}},
		{"bad dsn, no password echo", postgres.Config{DSN: "postgres://u:s3cret@h:notaport/db"}, []string{"dsn is not a valid"}},
		{"bad schema", postgres.Config{DSN: "postgres://h/db", Schema: `x"; DROP`}, []string{"schema"}},
		{
			"bad domains and negatives",
			postgres.Config{DSN: "postgres://h/db", OutboundDomains: []string{"a@b.c"}, MaxConns: -1, Timeout: -1},
			[]string{"outbound_domains", "max_conns", "timeout"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if (err != nil) != (len(tt.want) > 0) {
				t.Fatalf("Validate = %v, want %v", err, tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate = %v, lacks %q", err, w)
				}
			}
			if err != nil && strings.Contains(err.Error(), "s3cret") {
				t.Errorf("Validate = %v leaks the password", err)
			}
		})
	}
}

func TestNewDoesNotDialAndNeedsALogger(t *testing.T) {
	c, err := postgres.New(postgres.Config{DSN: "postgres://u:p@127.0.0.1:1/db"}, discard())
	if err != nil {
		t.Fatalf("New dialled or failed: %v", err)
	}
	if c.Name() != postgres.DefaultName {
		t.Errorf("Name = %q", c.Name())
	}
	if err := c.Close(t.Context()); err != nil {
		t.Error(err)
	}
	if err := c.Close(t.Context()); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := postgres.New(postgres.Config{DSN: "postgres://h/db"}, nil); err == nil {
		t.Error("New without a logger succeeded")
	}
}

// BenchmarkUpsert reports upserts per second against the real server: every iteration is a new
// message, in a new thread, from one of 1024 senders at 64 companies (one transaction with the
// company, contact, lead, message and two event upserts).
func BenchmarkUpsert(b *testing.B) {
	for _, tt := range []struct {
		name     string
		parallel bool
	}{{"sequential", false}, {"parallel", true}} {
		b.Run(tt.name, func(b *testing.B) {
			tg := newTarget(b, func(c *postgres.Config) { c.MaxConns = 8 })
			if err := tg.c.Migrate(context.Background()); err != nil {
				b.Fatal(err)
			}
			var seq atomic.Int64
			upsert := func() error {
				i := seq.Add(1)
				m := crmtest.Message(fmt.Sprint("bench-", i))
				m.Message.ThreadKey = fmt.Sprintf("thread-%d@example.com", i)
				m.Enrichment.Contact.Email = fmt.Sprintf("lead%d@company%d.example", i%1024, i%64)
				m.Enrichment.Company.Domain = fmt.Sprintf("company%d.example", i%64)
				_, err := tg.c.Upsert(context.Background(), m)
				return err
			}
			start := time.Now()
			if tt.parallel {
				b.SetParallelism(4)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := upsert(); err != nil {
							b.Error(err)
							return
						}
					}
				})
			} else {
				for b.Loop() {
					if err := upsert(); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "upserts/s")
		})
	}
}
