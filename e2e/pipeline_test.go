package e2e_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/serde"
)

const (
	webhookSecretKey = "e2e-webhook-signing-key-0123456789"
	apiKey           = "e2e-api-key"
	domain           = "in.example.com"
)

// corpusMessage is one file from the shared corpora chosen for the run.
type corpusMessage struct {
	path      string
	messageID string
	subject   string
	raw       []byte
}

// pickCorpus chooses n files with a readable header block and a Message-ID no other chosen file
// has, so every one of them is a distinct message for the pipeline (distinct external id).
func pickCorpus(t *testing.T, dir string, n int, seen map[string]bool) []corpusMessage {
	t.Helper()
	var out []corpusMessage
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case "mbox", "large", "malformed":
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(p, ".eml") {
			paths = append(paths, p)
		}
		return nil
	})
	must(t, err, "walking %s", dir)
	sort.Strings(paths)
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		must(t, err, "reading %s", p)
		if len(raw) > 256*1024 {
			continue
		}
		m, err := mail.ReadMessage(bytes.NewReader(raw))
		if err != nil {
			continue
		}
		id := strings.Trim(strings.TrimSpace(m.Header.Get("Message-Id")), "<>")
		if id == "" || m.Header.Get("From") == "" || seen[strings.ToLower(id)] {
			continue
		}
		seen[strings.ToLower(id)] = true
		out = append(out, corpusMessage{path: p, messageID: id, subject: m.Header.Get("Subject"), raw: raw})
		if len(out) == n {
			return out
		}
	}
	t.Fatalf("only %d usable messages under %s, want %d", len(out), dir, n)
	return nil
}

// receiver is the webhook endpoint: it checks every Standard Webhooks signature with its own
// implementation of the spec (an oracle independent of pkg/webhooksig) and records deliveries.
type receiver struct {
	mu        sync.Mutex
	byID      map[string]int
	payloads  map[string]map[string]any
	badSig    int
	secretKey []byte
}

func newReceiver() *receiver {
	return &receiver{byID: map[string]int{}, payloads: map[string]map[string]any{}, secretKey: []byte(webhookSecretKey)}
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	id, ts, sigs := r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature")
	mac := hmac.New(sha256.New, rc.secretKey)
	fmt.Fprintf(mac, "%s.%s.", id, ts)
	mac.Write(body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	ok := false
	for _, s := range strings.Fields(sigs) {
		if hmac.Equal([]byte(s), []byte(want)) {
			ok = true
		}
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if !ok || id == "" {
		rc.badSig++
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var envelope struct {
		Type string         `json:"type"`
		Data map[string]any `json:"data"`
	}
	if err := json.Unmarshal(body, &envelope); err != nil || envelope.Type != "message.received" || envelope.Data == nil {
		http.Error(w, "bad payload", http.StatusBadRequest)
		return
	}
	payload := envelope.Data
	rc.byID[id]++
	rc.payloads[id] = payload
	w.WriteHeader(http.StatusNoContent)
}

func (rc *receiver) snapshot() (ids map[string]int, payloads map[string]map[string]any, bad int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	ids = map[string]int{}
	for k, v := range rc.byID {
		ids[k] = v
	}
	payloads = map[string]map[string]any{}
	for k, v := range rc.payloads {
		payloads[k] = v
	}
	return ids, payloads, rc.badSig
}

// TestPipelineEndToEnd runs the five services as OS processes on the real broker and Redis,
// sends 200 corpus messages with swaks and 50 over HTTP, and checks what reached the webhook
// and mail.crm.v1.
func TestPipelineEndToEnd(t *testing.T) {
	brokers := env(t, "MAILPIPE_TEST_KAFKA_BROKERS", "scripts/kafka-up.sh")
	redisURL := env(t, "MAILPIPE_TEST_REDIS_URL", "scripts/redis-up.sh")
	if _, err := exec.LookPath("swaks"); err != nil {
		t.Fatal("swaks is not installed: run scripts/deps.sh (make test does)")
	}
	ctx := t.Context()

	// given: a clean Redis database for this run (dedupe keys from an earlier run would hide
	// deliveries) and the topics applied by the CLI.
	opt, err := redis.ParseURL(redisURL)
	must(t, err, "parsing redis url")
	opt.DB = 7
	rdb := redis.NewClient(opt)
	defer func() { _ = rdb.Close() }()
	must(t, rdb.FlushDB(ctx).Err(), "flushing redis db 7")
	redisDB := fmt.Sprintf("redis://%s/7", opt.Addr)

	tmp := t.TempDir()
	bins := buildServices(t, tmp, "mailpipe", "ingress", "parser", "classifier", "enricher", "crm-sink")
	apply := exec.CommandContext(ctx, bins["mailpipe"], "topics", "apply", "--partitions", "6")
	apply.Env = append(os.Environ(), "MAILPIPE_KAFKA_BROKERS="+brokers)
	if out, err := apply.CombinedOutput(); err != nil {
		t.Fatalf("mailpipe topics apply: %v\n%s", err, out)
	}

	rc := newReceiver()
	hook := httptest.NewServer(rc)
	defer hook.Close()

	crmStart := endOffsets(t, brokers, "mail.crm.v1")

	keyHash := sha256.Sum256([]byte(apiKey))
	common := []string{
		"MAILPIPE_KAFKA_BROKERS=" + brokers,
		"MAILPIPE_REDIS_URL=" + redisDB,
		"MAILPIPE_BLOB_URL=file://" + filepath.Join(tmp, "blobs"),
	}
	smtpAddr, httpAddr := freeAddr(t), freeAddr(t)
	procs := []*proc{
		startProc(t, "ingress", bins["ingress"], append(common,
			"MAILPIPE_SMTP_ADDR="+smtpAddr, "MAILPIPE_HTTP_ADDR="+httpAddr, "MAILPIPE_INGEST_DOMAINS="+domain,
			"MAILPIPE_HTTP_API_KEY_SHA256="+hex.EncodeToString(keyHash[:]))),
		startProc(t, "parser", bins["parser"], common),
		startProc(t, "classifier", bins["classifier"], common),
		startProc(t, "enricher", bins["enricher"], common),
		startProc(t, "crm-sink", bins["crm-sink"], append(common,
			"MAILPIPE_WEBHOOK_URL="+hook.URL, "MAILPIPE_SINK_LAKE_SALT=e2e-lake-salt-0123456789",
			"MAILPIPE_WEBHOOK_SECRETS=whsec_"+base64.StdEncoding.EncodeToString([]byte(webhookSecretKey)),
			// The receiver is an httptest server on loopback, refused by the SSRF guard by default.
			"MAILPIPE_WEBHOOK_ALLOW_PRIVATE=true")),
	}
	for _, p := range procs {
		p.waitReady(t, 90*time.Second)
	}

	seen := map[string]bool{}
	msgs := pickCorpus(t, filepath.Join("..", "..", "shared", "corpus"), 125, seen)
	msgs = append(msgs, pickCorpus(t, filepath.Join("..", "..", "shared", "corpus-bounces"), 125, seen)...)
	viaSMTP, viaHTTP := msgs[:200], msgs[200:]

	// when: 200 messages over SMTP with swaks, 50 over HTTP, and one of them sent twice.
	sendStart := time.Now()
	for i, m := range viaSMTP {
		swaks(t, smtpAddr, fmt.Sprintf("sender%d@example.org", i), "support@"+domain, m.path)
	}
	for _, m := range viaHTTP {
		postHTTP(t, httpAddr, "support@"+domain, m.raw)
	}
	// The repeats go to another recipient so ingress's retry dedupe (same bytes, same
	// recipients) does not drop them: they travel the whole pipeline and the sink must see that
	// their external id was delivered already.
	swaks(t, smtpAddr, "sender0@example.org", "sales@"+domain, viaSMTP[0].path)
	postHTTP(t, httpAddr, "sales@"+domain, viaHTTP[0].raw)
	t.Logf("sent %d messages (+2 repeats) in %s", len(msgs), time.Since(sendStart).Round(time.Millisecond))

	// then: exactly one signed delivery per distinct message …
	eventually(t, 3*time.Minute, "one webhook delivery per message", func() (bool, string) {
		ids, _, _ := rc.snapshot()
		return len(ids) >= len(msgs), fmt.Sprintf("%d of %d delivered", len(ids), len(msgs))
	})
	time.Sleep(3 * time.Second) // let any stray duplicate arrive before counting
	ids, payloads, bad := rc.snapshot()
	if bad != 0 {
		t.Errorf("%d deliveries with a bad signature", bad)
	}
	if len(ids) != len(msgs) {
		t.Errorf("%d distinct deliveries, want %d", len(ids), len(msgs))
	}
	for id, n := range ids {
		if n != 1 {
			t.Errorf("webhook-id %s delivered %d times", id, n)
		}
	}
	byMessageID := map[string]map[string]any{}
	for _, p := range payloads {
		mid, _ := p["message_id"].(string)
		byMessageID[strings.ToLower(mid)] = p
	}
	for _, m := range msgs {
		if _, ok := byMessageID[strings.ToLower(m.messageID)]; !ok {
			t.Errorf("%s (Message-ID %s) was not delivered", m.path, m.messageID)
		}
	}
	checkByHand(t, byMessageID)

	// … and one mail.crm.v1 outcome per message.
	outcomes := readOutcomes(t, brokers, crmStart, len(msgs)+2)
	perExt := map[string]int{}
	for _, o := range outcomes {
		perExt[o.ExternalID]++
	}
	if len(perExt) != len(msgs) {
		t.Errorf("mail.crm.v1 has outcomes for %d messages, want %d", len(perExt), len(msgs))
	}
	created := 0
	for _, o := range outcomes {
		if o.Outcome == "created" {
			created++
		}
	}
	deduped := len(outcomes) - created
	if deduped != 2 {
		t.Errorf("%d outcomes other than 'created', want 2 (the repeats, deduped)", deduped)
	}
	if created != len(msgs) {
		t.Errorf("%d outcomes 'created', want %d (one per message; repeats must not write again)", created, len(msgs))
	}
	t.Logf("%d messages delivered once each in %s", len(ids), time.Since(sendStart).Round(time.Millisecond))

	// Clients nobody here wrote read the topics: kcat sees the thread keys, Python
	// confluent-kafka + fastavro decode the lake rows with only the .avsc file.
	checkKeysWithKcat(t, brokers, []string{"56A0AA5F.4020203@test.com", "199407072116.RAA14128@CS.EXAMPLE.COM"})
	delivered := map[string]string{}
	for _, p := range payloads {
		id, _ := p["id"].(string)
		from, _ := p["from"].(map[string]any)
		addr, _ := from["address"].(string)
		delivered[id] = addr
	}
	checkLakeWithPython(t, brokers, delivered, len(msgs)+2)
	checkLakeAnalysis(t, bins["mailpipe"], brokers, sendStart, len(msgs)+2, []string{"webhook"}, payloadKinds(payloads))
}

// checkByHand compares a few deliveries with values read off the corpus files by a person.
func checkByHand(t *testing.T, byID map[string]map[string]any) {
	t.Helper()
	for _, tt := range []struct {
		messageID, subject, from string
	}{
		// Read off the files: corpus/attachments/enmime--mail-attachment-only-no-disposition.eml,
		// corpus/bounces/flanker--bounce-delayed.eml and the RFC 2047 (UTF-8, base64, folded)
		// subject of corpus/charsets/mail-gem--multi_charset-japanese_attachment_long_name.eml.
		{"56A0AA5F.4020203@test.com", "Test", "alice@test.com"},
		{"199407072116.RAA14128@CS.EXAMPLE.COM", "Returned mail: Cannot send message for 5 days", "mailer-daemon@cs.example.com"},
		{"60A112A8-F26C-4E23-95B8-4EB9F139D6A0@test.lindsaar.net", strings.Repeat("まみむめも", 10), "mikel@test.lindsaar.net"},
	} {
		p, ok := byID[strings.ToLower(tt.messageID)]
		if !ok {
			t.Errorf("message %s not delivered", tt.messageID)
			continue
		}
		if p["subject"] != tt.subject {
			t.Errorf("%s: subject %q, want %q", tt.messageID, p["subject"], tt.subject)
		}
		from, _ := p["from"].(map[string]any)
		if addr, _ := from["address"].(string); addr != tt.from {
			t.Errorf("%s: from %q, want %q", tt.messageID, p["from"], tt.from)
		}
	}
}

func swaks(t *testing.T, server, from, to, file string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "swaks", "--server", server, "--from", from, "--to", to,
		"--data", "@"+smtpSafe(t, file), "--hide-all")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("swaks %s: %v\n%s", file, err, out)
	}
}

// smtpSafe returns file, or a copy with CRLF line endings when file has bare CR or LF: ingress
// refuses those over SMTP (smuggling guard, ADR 0003), and a conforming MTA would have sent the
// message with CRLF endings. Over HTTP the corpus bytes go as they are.
func smtpSafe(t *testing.T, file string) string {
	t.Helper()
	raw, err := os.ReadFile(file)
	must(t, err, "reading %s", file)
	norm := bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n"))
	norm = bytes.ReplaceAll(norm, []byte("\r"), nil)
	norm = bytes.ReplaceAll(norm, []byte("\n"), []byte("\r\n"))
	if bytes.Equal(norm, raw) {
		return file
	}
	out := filepath.Join(t.TempDir(), filepath.Base(file))
	must(t, os.WriteFile(out, norm, 0o600), "writing %s", out)
	return out
}

func postHTTP(t *testing.T, addr, to string, raw []byte) {
	t.Helper()
	u := "http://" + addr + "/v1/messages?" + url.Values{"rcpt_to": {to}, "mail_from": {"http-sender@example.org"}}.Encode()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, u, bytes.NewReader(raw))
	must(t, err, "building request")
	req.Header.Set("Authorization", "Bearer "+apiKey)
	req.Header.Set("Content-Type", "message/rfc822")
	resp, err := http.DefaultClient.Do(req)
	must(t, err, "posting message")
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusAccepted {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("POST /v1/messages: %s %s", resp.Status, b)
	}
}

func endOffsets(t *testing.T, brokers, topic string) map[int32]int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...))
	must(t, err, "kafka client")
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(t.Context(), topic)
	must(t, err, "listing end offsets of %s", topic)
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	if len(out) == 0 {
		t.Fatalf("topic %s has no partitions", topic)
	}
	return out
}

func readOutcomes(t *testing.T, brokers string, start map[int32]int64, want int) []events.CRMOutcome {
	t.Helper()
	codec, err := serde.New(t.Context())
	must(t, err, "codec")
	offsets := map[string]map[int32]kgo.Offset{"mail.crm.v1": {}}
	for p, o := range start {
		offsets["mail.crm.v1"][p] = kgo.NewOffset().At(o)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...),
		kgo.ConsumePartitions(offsets), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	must(t, err, "kafka client")
	defer cl.Close()
	var out []events.CRMOutcome
	deadline := time.Now().Add(60 * time.Second)
	for len(out) < want && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) {
			var o events.CRMOutcome
			must(t, codec.Decode(t.Context(), "mail.crm.v1", r.Value, &o), "decoding outcome")
			out = append(out, o)
		})
	}
	// Read a little longer so duplicates, if any, are seen.
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
		var o events.CRMOutcome
		must(t, codec.Decode(t.Context(), "mail.crm.v1", r.Value, &o), "decoding outcome")
		out = append(out, o)
	})
	cancel()
	return out
}
