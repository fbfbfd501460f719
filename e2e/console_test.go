package e2e_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Where the browser test finds its tools; scripts/deps.sh installs both (make test runs it).
const (
	chromiumPath  = "/usr/bin/chromium"
	consoleScript = "../scripts/node/console-check.mjs"
	playwrightDir = "../scripts/node/node_modules/playwright-core"
)

// TestConsoleInBrowser is the ops console's browser test (issue 7): `mailpipe dev` runs the
// pipeline with the console on its admin port; one message goes through to the local CRM store,
// and the test adds a crm-sink dead letter of it (class config, as for a CRM target the
// deployment does not configure). A real headless Chromium, driven by
// scripts/node/console-check.mjs (playwright-core), then opens the overview, looks the message
// up by Message-ID, opens the dead letter, dry-runs its replay, confirms it and checks the
// result, saving a screenshot per step. Set MAILPIPE_CONSOLE_SCREENSHOTS to keep them in a
// directory of your choice (docs/console.md); by default they go to the test's temp dir.
func TestConsoleInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e needs real services; run make test")
	}
	chromium := os.Getenv("CHROMIUM_PATH")
	if chromium == "" {
		chromium = chromiumPath
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("no Chromium at %s (%v): install the Debian chromium package with scripts/deps.sh (make test runs it)", chromium, err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is not installed: run scripts/deps.sh (make test runs it)")
	}
	if _, err := os.Stat(playwrightDir); err != nil {
		t.Fatalf("playwright-core is not installed in scripts/node (%v): run scripts/deps.sh (make test runs it; npm ci in scripts/node)", err)
	}

	bins := buildServices(t, t.TempDir(), "mailpipe")
	dir := t.TempDir()
	admin, httpAddr, kafkaAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	dev := startDev(t, bins["mailpipe"], admin,
		"--dir", dir, "--kafka", kafkaAddr, "--redis", freeAddr(t), "--smtp", freeAddr(t),
		"--http", httpAddr, "--admin", admin, "--api-key", apiKey)
	dev.waitReady(t, 60*time.Second)

	messageID := fmt.Sprintf("console-e2e-%d@example.org", time.Now().UnixNano())
	eml := filepath.Join(t.TempDir(), "console.eml")
	msg := "From: Ann Example <ann@example.org>\r\nTo: support@in.example.com\r\nSubject: Console browser test\r\n" +
		"Message-ID: <" + messageID + ">\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\nHello from the console test.\r\n"
	must(t, os.WriteFile(eml, []byte(msg), 0o600), "writing the message")
	send := exec.CommandContext(t.Context(), bins["mailpipe"], "send", "--http", "http://"+httpAddr, "--api-key", apiKey,
		"--from", "ann@example.org", "--to", "support@in.example.com", eml)
	if out, err := send.CombinedOutput(); err != nil {
		t.Fatalf("mailpipe send: %v\n%s", err, out)
	}

	// The console's index shows the message written to the local CRM store.
	lookup := "http://" + admin + "/console/lookup?q=" + url.QueryEscape(messageID)
	eventually(t, 60*time.Second, "the console to show the message written to the CRM store", func() (bool, string) {
		page := httpGet(t, lookup)
		return strings.Contains(page, "local: created"), "lookup page: " + pageText(page)
	})
	// A crm-sink dead letter of the message for a target dev does not configure, as crm-sink
	// writes one (docs/crm/delivery.md): the enriched record with the mailpipe.dlq.* headers.
	deadLetter(t, kafkaAddr, messageID)
	eventually(t, 30*time.Second, "the console to show the dead letter", func() (bool, string) {
		page := httpGet(t, lookup)
		return strings.Contains(page, `data-kind="dead-letter"`), "lookup page: " + pageText(page)
	})

	shots := os.Getenv("MAILPIPE_CONSOLE_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	} else if shots, err = filepath.Abs(shots); err != nil {
		t.Fatal(err)
	}
	script, err := filepath.Abs(consoleScript)
	must(t, err, "locating %s", consoleScript)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	check := exec.CommandContext(ctx, node, script, "--base", "http://"+admin, "--message-id", messageID,
		"--target", "local", "--stage", "crm-sink", "--out", shots)
	check.Dir = filepath.Dir(script)
	check.Env = append(os.Environ(), "CHROMIUM_PATH="+chromium)
	var stderr strings.Builder
	check.Stderr = &stderr
	out, err := check.Output()
	if err != nil {
		t.Fatalf("console-check.mjs: %v\n%s\nscreenshots in %s", err, stderr.String(), shots)
	}
	var summary struct {
		Screenshots []string `json:"screenshots"`
		Status      string   `json:"status"`
		TraceID     string   `json:"traceId"`
		ErrorClass  string   `json:"errorClass"`
		Replayed    string   `json:"replayed"`
	}
	must(t, json.Unmarshal(out, &summary), "reading the script's summary %q", out)
	if len(summary.Screenshots) != 6 || summary.ErrorClass != "config" {
		t.Fatalf("summary %+v", summary)
	}
	t.Logf("journey %q, trace %s; %s; screenshots in %s", summary.Status, summary.TraceID, summary.Replayed, shots)

	// The confirmed replay went through: the record is back on mail.enriched.v1 and crm-sink
	// handled it again (the local store already holds it), and the audit names the operator.
	eventually(t, 60*time.Second, "the replayed record to reach crm-sink again", func() (bool, string) {
		page := httpGet(t, lookup)
		n := strings.Count(page, `data-kind="crm"`)
		return n >= 2, fmt.Sprintf("%d CRM outcomes in the journey: %s", n, pageText(page))
	})
	if page := httpGet(t, "http://"+admin+"/console/"); !strings.Contains(page, "1 dead letters</a>, 0 not replayed") {
		t.Fatalf("the overview does not count the dead letter as replayed: %s", pageText(page))
	}
}

// deadLetter writes a crm-sink dead letter of the message's mail.enriched.v1 record, with the
// header names of the mail.dlq.v1 wire contract (pkg/dlq).
func deadLetter(t *testing.T, brokers, messageID string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ConsumeTopics("mail.enriched.v1"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	must(t, err, "connecting to the dev kafka")
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var rec *kgo.Record
	for rec == nil {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("no mail.enriched.v1 record of %s", messageID)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if strings.Contains(string(r.Value), messageID) {
				rec = r
			}
		})
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	headers := append([]kgo.RecordHeader(nil), rec.Headers...)
	for _, h := range [][2]string{
		{"mailpipe.dlq.original.topic", rec.Topic},
		{"mailpipe.dlq.original.partition", strconv.Itoa(int(rec.Partition))},
		{"mailpipe.dlq.original.offset", strconv.FormatInt(rec.Offset, 10)},
		{"mailpipe.dlq.original.timestamp", rec.Timestamp.UTC().Format(time.RFC3339Nano)},
		{"mailpipe.dlq.stage", "crm-sink"},
		{"mailpipe.dlq.error.class", "config"},
		{"mailpipe.dlq.error.message", `crm target "salesforce" is not configured in this deployment`},
		{"mailpipe.dlq.attempts", "1"},
		{"mailpipe.dlq.failure.first", now},
		{"mailpipe.dlq.failure.last", now},
	} {
		headers = append(headers, kgo.RecordHeader{Key: h[0], Value: []byte(h[1])})
	}
	dl := &kgo.Record{Topic: "mail.dlq.v1", Key: rec.Key, Value: rec.Value, Headers: headers}
	must(t, cl.ProduceSync(ctx, dl).FirstErr(), "writing the dead letter")
}

// startDev runs `mailpipe dev` with args; admin is the --admin address, for waitReady.
func startDev(t *testing.T, bin, admin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: "mailpipe dev", admin: admin, done: make(chan struct{})}
	p.cmd = exec.Command(bin, append([]string{"dev"}, args...)...) //nolint:noctx // stopped in Cleanup with an interrupt
	p.cmd.Env = append(os.Environ(), "MAILPIPE_LOG_LEVEL=info")
	pr, pw := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting mailpipe dev: %v", err)
	}
	go func() {
		s := bufio.NewScanner(pr)
		s.Buffer(make([]byte, 64*1024), 1024*1024)
		for s.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, s.Text())
			p.mu.Unlock()
		}
	}()
	go func() { _ = p.cmd.Wait(); _ = pw.Close(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			p.dump(t, 80)
		}
	})
	return p
}

func httpGet(t *testing.T, u string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	must(t, err, "building GET %s", u)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err.Error()
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// pageText is a page's <main> without tags, for failure messages.
func pageText(page string) string {
	if i := strings.Index(page, "<main>"); i >= 0 {
		page = page[i:]
	}
	var b strings.Builder
	in := false
	for _, r := range page {
		switch {
		case r == '<':
			in = true
		case r == '>':
			in = false
			b.WriteByte(' ')
		case !in:
			b.WriteRune(r)
		}
	}
	return strings.Join(strings.Fields(b.String()), " ")
}
