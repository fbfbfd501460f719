package console

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/app"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/kafka/kafkatest"
)

// startConsole runs a console and its tracker against a kfake cluster holding the pipeline
// topics, and returns its test server.
func startConsole(t *testing.T) (*Console, *httptest.Server, []string) {
	t.Helper()
	brokers := kafkatest.NewCluster(t, kfake.NumBrokers(1))
	log := slog.New(slog.DiscardHandler)
	adm, err := kafka.NewAdmin(kafka.Config{Brokers: brokers}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	if err := kafka.ApplyTopics(t.Context(), adm, kafka.TopicSpecs(kafka.TopicsConfig{Partitions: 2})); err != nil {
		t.Fatal(err)
	}
	newClient := func(opts ...kgo.Opt) (*kgo.Client, error) {
		return kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, opts...)...)
	}
	c, err := New(Config{NewClient: newClient, Decoder: newCodec(t), OperatorHeader: "X-Test-User"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- app.Run(t.Context(), log, c.Actor()) }()
	t.Cleanup(func() {
		if err := <-done; err != nil {
			t.Errorf("tracker: %v", err)
		}
	})
	srv := httptest.NewServer(c.Handler())
	t.Cleanup(srv.Close)
	return c, srv, brokers
}

func get(t *testing.T, u string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func post(t *testing.T, u string, form url.Values, header map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// hidden reads the hidden form fields of the form whose submit button has the id.
func hidden(t *testing.T, page, button string) url.Values {
	t.Helper()
	i := strings.Index(page, `id="`+button+`"`)
	if i < 0 {
		t.Fatalf("no button %s in page:\n%s", button, page)
	}
	start := strings.LastIndex(page[:i], "<form")
	v := url.Values{}
	for _, m := range regexp.MustCompile(`<input type="hidden" name="([a-z]+)" value="([^"]*)">`).FindAllStringSubmatch(page[start:i], -1) {
		v.Set(m[1], htmlUnescape(m[2]))
	}
	return v
}

func htmlUnescape(s string) string {
	return strings.NewReplacer("&#43;", "+", "&amp;", "&", "&#34;", `"`, "&#39;", "'", "&lt;", "<", "&gt;", ">").Replace(s)
}

func TestConsolePages(t *testing.T) {
	c, srv, brokers := startConsole(t)
	codec := newCodec(t)
	m := testMessage(7, time.Now().UTC().Add(-time.Minute).Truncate(time.Millisecond))
	rs := m.records(t, codec, "salesforce")
	for _, r := range rs {
		r.Partition, r.Offset = 0, 0
	}
	kafkatest.Produce(t, brokers, rs...)

	deadline := time.Now().Add(15 * time.Second)
	for len(c.Tracker().Lookup(m.messageID)) == 0 || len(c.Tracker().Lookup(m.messageID)[0].Events) < len(rs) {
		if time.Now().After(deadline) {
			t.Fatalf("the tracker did not index the message: %+v", c.Tracker().Lookup(m.messageID))
		}
		time.Sleep(50 * time.Millisecond)
	}

	code, body := get(t, srv.URL+"/console/")
	if code != http.StatusOK || !strings.Contains(body, "mailpipe-crm-sink") || !strings.Contains(body, "crm-sink</a></td><td class=\"n\">1") {
		t.Fatalf("overview %d:\n%s", code, body)
	}
	if !strings.Contains(body, `<td class="n">4000 ms</td>`) {
		t.Fatalf("overview shows no latency:\n%s", body)
	}

	code, body = get(t, srv.URL+"/console/lookup?q="+url.QueryEscape("<"+m.messageID+">"))
	for _, want := range []string{testTrace, "n-" + m.id, "CRM local: created, salesforce: failed", `data-kind="dead-letter"`} {
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Fatalf("lookup %d lacks %q:\n%s", code, want, body)
		}
	}
	if strings.Contains(body, "SECRET") {
		t.Fatal("lookup shows a body")
	}
	if _, body = get(t, srv.URL+"/console/lookup?q=nobody"); !strings.Contains(body, `id="not-found"`) {
		t.Fatalf("lookup of an unknown key:\n%s", body)
	}

	_, body = get(t, srv.URL+"/console/dlq?stage=crm-sink&class=config")
	letter := regexp.MustCompile(`href="/console/dlq/(\d+)/(\d+)"`).FindStringSubmatch(body)
	if letter == nil || !strings.Contains(body, "salesforce is not configured") {
		t.Fatalf("dlq list:\n%s", body)
	}
	if _, body = get(t, srv.URL+"/console/dlq?stage=parser"); !strings.Contains(body, "No dead letters match") {
		t.Fatalf("filtered dlq list:\n%s", body)
	}
	if code, body = get(t, srv.URL+"/console/dlq?since=yesterday"); code != http.StatusBadRequest || !strings.Contains(body, "neither an RFC 3339") {
		t.Fatalf("bad filter %d:\n%s", code, body)
	}

	code, body = get(t, srv.URL+"/console/dlq/"+letter[1]+"/"+letter[2])
	if code != http.StatusOK || !strings.Contains(body, `<td id="class">config</td>`) || !strings.Contains(body, "[redacted: ") || strings.Contains(body, "SECRET") {
		t.Fatalf("dead letter %d:\n%s", code, body)
	}
	if code, _ = get(t, srv.URL+"/console/dlq/"+letter[1]+"/999"); code != http.StatusNotFound {
		t.Fatalf("missing dead letter: %d", code)
	}

	form := hidden(t, body, "dry-run")
	bad := url.Values{}
	for k, v := range form {
		bad[k] = v
	}
	bad.Set("token", "forged")
	if code, _ = post(t, srv.URL+"/console/dlq/dry-run", bad, nil); code != http.StatusForbidden {
		t.Fatalf("dry run with a forged token: %d", code)
	}
	if code, _ = post(t, srv.URL+"/console/dlq/dry-run", form, map[string]string{"Origin": "https://evil.example"}); code != http.StatusForbidden {
		t.Fatalf("cross-origin dry run: %d", code)
	}
	code, body = post(t, srv.URL+"/console/dlq/dry-run", form, map[string]string{"Origin": srv.URL})
	if code != http.StatusOK || !strings.Contains(body, "Would replay 1 dead letters") {
		t.Fatalf("dry run %d:\n%s", code, body)
	}
	confirm := hidden(t, body, "confirm")
	off, _ := strconv.Atoi(letter[2])
	if !strings.HasPrefix(confirm.Get("name"), "console-") || confirm.Get("ranges") != letter[1]+":"+letter[2]+":"+strconv.Itoa(off+1) {
		t.Fatalf("confirm form %v", confirm)
	}
	noConfirm := url.Values{}
	for k, v := range confirm {
		noConfirm[k] = v
	}
	noConfirm.Del("confirm")
	if code, _ = post(t, srv.URL+"/console/dlq/replay", noConfirm, nil); code != http.StatusBadRequest {
		t.Fatalf("replay without confirmation: %d", code)
	}
	code, body = post(t, srv.URL+"/console/dlq/replay", confirm, map[string]string{"X-Test-User": "ops-alice"})
	if code != http.StatusOK || !strings.Contains(body, "Replayed 1 dead letters") || !strings.Contains(body, "ops-alice") {
		t.Fatalf("replay %d:\n%s", code, body)
	}
	// The replayed record is back on mail.enriched.v1 next to the original.
	got := kafkatest.ConsumeAll(t, brokers, kafka.TopicEnriched, 2, 10*time.Second)
	if len(got) != 2 {
		t.Fatalf("%d records on %s, want 2", len(got), kafka.TopicEnriched)
	}
}
