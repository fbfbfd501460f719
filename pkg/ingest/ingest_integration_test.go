package ingest_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/dedupe/redisdedupe"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/ingest"
	"github.com/mailpipe/mailpipe/pkg/ingest/httpd"
	"github.com/mailpipe/mailpipe/pkg/ingest/smtpd"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/kafka/kafkatest"
	"github.com/mailpipe/mailpipe/pkg/redisconn/redistest"
	"github.com/mailpipe/mailpipe/pkg/thread/redisthread"
)

// TestIntegrationSMTPToKafka sends a three-message conversation over SMTP to a server backed by
// the real broker ($MAILPIPE_TEST_KAFKA_BROKERS) and reads mail.raw records back: each reply
// of the server carries the id of a record that is on the topic, decoded with serde, with the
// envelope as sent and every message of the conversation keyed by its root on one partition,
// in order.
func TestIntegrationSMTPToKafka(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	topic := kafkatest.TopicName(t, "mail.raw")
	kafkatest.CreateTopic(t, brokers, topic, 6)

	log := slog.New(slog.DiscardHandler)
	prod, err := kafka.NewProducer(kafka.Config{Brokers: brokers}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	in := newIngester(t, ingest.Config{Topic: topic, Domains: []string{"in.example.com"}},
		ingest.Options{Producer: prod, Logger: log, ThreadIndex: newMemIndex(nil), Now: time.Now})
	srv, err := smtpd.New(smtpd.Config{Hostname: "mx.test"}, in, log)
	if err != nil {
		t.Fatal(err)
	}
	var lc net.ListenConfig
	l, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()

	// given a root, a reply carrying only In-Reply-To, and a reply to that reply
	msgs := []string{
		"From: Ann <ann@example.org>\r\nSubject: Pricing\r\nMessage-ID: <root@example.org>\r\n\r\nHow much?\r\n",
		"From: Support <support@in.example.com>\r\nSubject: Re: Pricing\r\nMessage-ID: <r1@in.example.com>\r\n" +
			"In-Reply-To: <root@example.org>\r\n\r\n42\r\n",
		"From: Ann <ann@example.org>\r\nSubject: Re: Pricing\r\nMessage-ID: <r2@example.org>\r\n" +
			"In-Reply-To: <r1@in.example.com>\r\n\r\nThanks\r\n",
	}
	c, err := smtp.Dial(l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	if err := c.Hello("client.example.org"); err != nil {
		t.Fatal(err)
	}
	var replies []string
	for _, m := range msgs {
		// when each is sent over SMTP
		if err := c.Mail("ann@example.org", nil); err != nil {
			t.Fatal(err)
		}
		if err := c.Rcpt("Support@in.example.com", nil); err != nil {
			t.Fatal(err)
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(m)); err != nil {
			t.Fatal(err)
		}
		resp, err := w.CloseWithResponse()
		if err != nil {
			t.Fatalf("DATA: %v", err)
		}
		replies = append(replies, resp.StatusText)
	}
	if err := c.Quit(); err != nil {
		t.Errorf("QUIT: %v", err)
	}

	// then the broker holds one record per 250, as sent, keyed by the root
	recs := kafkatest.ConsumeAll(t, brokers, topic, len(msgs), 30*time.Second)
	if len(recs) != len(msgs) {
		t.Fatalf("consumed %d records, want %d", len(recs), len(msgs))
	}
	for i, r := range recs {
		var got events.Raw
		if err := codec(t).Decode(t.Context(), kafka.TopicRaw, r.Value, &got); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if want := "2.0.0 OK: queued as " + got.ID; replies[i] != want {
			t.Errorf("record %d: SMTP reply %q, want %q", i, replies[i], want)
		}
		if got.ThreadKey != "root@example.org" || string(r.Key) != got.ThreadKey {
			t.Errorf("record %d: thread key %q, record key %q; want root@example.org", i, got.ThreadKey, r.Key)
		}
		env := got.Envelope
		if env.MailFrom != "ann@example.org" || !slices.Equal(env.RcptTo, []string{"support@in.example.com"}) ||
			env.ClientIP != "127.0.0.1" || env.Helo != "client.example.org" || env.Source != "smtp" || env.TLS != nil {
			t.Errorf("record %d: envelope %+v", i, env)
		}
		if got.Tenant != ingest.DefaultTenant || got.Raw == nil {
			t.Fatalf("record %d: tenant %q, raw inline %v", i, got.Tenant, got.Raw != nil)
		}
		// The message as sent, behind the Received header the server prepends.
		if raw := string(*got.Raw); !strings.HasSuffix(raw, "\r\n"+msgs[i]) || !strings.HasPrefix(raw, "Received: from client.example.org ([127.0.0.1])") {
			t.Errorf("record %d: raw %q", i, raw)
		}
		if got.Size != int64(len(*got.Raw)) || got.ReceivedAt.IsZero() {
			t.Errorf("record %d: size %d, received_at %s", i, got.Size, got.ReceivedAt)
		}
		if r.Partition != recs[0].Partition {
			t.Errorf("record %d on partition %d, record 0 on %d: one conversation must stay on one partition", i, r.Partition, recs[0].Partition)
		}
	}
}

// TestIntegrationHTTPRetryIsDeduped posts one message twice over HTTP, as a client does after
// losing the first 202, with retry dedupe and the thread index on the real Redis
// ($MAILPIPE_TEST_REDIS_URL): the retry is answered 202 as a duplicate and the real broker holds
// exactly one record.
func TestIntegrationHTTPRetryIsDeduped(t *testing.T) {
	brokers := kafkatest.Brokers(t)
	rdb, prefix := redistest.Client(t)
	topic := kafkatest.TopicName(t, "mail.raw")
	kafkatest.CreateTopic(t, brokers, topic, 3)

	log := slog.New(slog.DiscardHandler)
	prod, err := kafka.NewProducer(kafka.Config{Brokers: brokers}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	idx, err := redisthread.New(rdb, redisthread.WithPrefix(prefix+"thread:"))
	if err != nil {
		t.Fatal(err)
	}
	in := newIngester(t, ingest.Config{Topic: topic}, ingest.Options{
		Producer: prod, Logger: log, Now: time.Now, ThreadIndex: idx,
		Dedupe: redisdedupe.New(rdb, redisdedupe.WithPrefix(prefix+"dedupe:")),
	})
	h, err := httpd.New(httpd.Config{APIKeySHA256: []string{httpd.HashKey("k")}}, in, log)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	post := func() (int, map[string]any) {
		t.Helper()
		body := "From: ann@example.org\r\nMessage-ID: <q1@example.org>\r\nIn-Reply-To: <root@example.org>\r\n\r\nHi\r\n"
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost,
			srv.URL+httpd.Path+"?mail_from=ann@example.org&rcpt_to=support@in.example.com", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer k")
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = res.Body.Close() }()
		var out map[string]any
		_ = json.NewDecoder(res.Body).Decode(&out)
		return res.StatusCode, out
	}

	// given a message recorded once
	status, first := post()
	if status != http.StatusAccepted || first["id"] == "" || first["thread_key"] != "root@example.org" {
		t.Fatalf("first post: %d %v", status, first)
	}
	// when the client posts it again
	status, again := post()
	// then the retry is acknowledged as a duplicate
	if status != http.StatusAccepted || again["duplicate"] != true || again["thread_key"] != "root@example.org" {
		t.Errorf("retry: %d %v, want 202 duplicate", status, again)
	}
	// and the broker holds exactly one record (a marker record written after the retry bounds
	// the read, so a second copy could not hide behind the consume timeout)
	kafkatest.Produce(t, brokers, &kgo.Record{Topic: topic, Key: []byte("root@example.org"), Value: []byte("marker")})
	recs := kafkatest.ConsumeAll(t, brokers, topic, 2, 30*time.Second)
	if len(recs) != 2 || string(recs[1].Value) != "marker" {
		t.Errorf("topic holds %d records before the marker, want 1", len(recs)-1)
	}
	// and the thread index learned the reply
	if key, found, err := idx.Lookup(t.Context(), "q1@example.org"); err != nil || !found || key != "root@example.org" {
		t.Errorf("index[q1@example.org] = %q, %v, %v; want root@example.org", key, found, err)
	}
}
