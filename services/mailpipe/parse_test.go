package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/app"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/failure"
)

// corpus is the shared test corpus, read in place.
const corpus = "../../../shared/corpus/"

// parseOut runs `mailpipe parse` with args and stdin and decodes every printed record.
func parseOut(t *testing.T, stdin string, args ...string) ([]events.Parsed, error) {
	t.Helper()
	env, out, _ := testEnv(append([]string{"parse"}, args...)...)
	env.Args = env.Args[1:]
	err := parseFiles(t.Context(), env, strings.NewReader(stdin))
	var recs []events.Parsed
	dec := json.NewDecoder(out)
	for dec.More() {
		var p events.Parsed
		if derr := dec.Decode(&p); derr != nil {
			t.Fatalf("decoding output %q: %v", out.String(), derr)
		}
		recs = append(recs, p)
	}
	return recs, err
}

// headerValue reads a header field from a corpus file, so the test checks against the file
// instead of a copy of it.
func headerValue(t *testing.T, raw []byte, name string) string {
	t.Helper()
	for line := range strings.Lines(string(raw)) {
		if k, v, ok := strings.Cut(strings.TrimRight(line, "\r\n"), ":"); ok && strings.EqualFold(k, name) {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %s header", name)
	return ""
}

func TestParsePlainFile(t *testing.T) {
	file := corpus + "plain/inbucket--basic.eml"
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := parseOut(t, "", "--mail-from", "a@example.org", "--rcpt-to", "b@in.example.com,c@in.example.com",
		"--client-ip", "192.0.2.7", file)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 {
		t.Fatalf("got %d records, want 1", len(recs))
	}
	p := recs[0]
	if p.Subject != headerValue(t, raw, "Subject") {
		t.Errorf("subject %q, want %q", p.Subject, headerValue(t, raw, "Subject"))
	}
	if p.From == nil || p.From.Address != headerValue(t, raw, "From") {
		t.Errorf("from %+v, want %q", p.From, headerValue(t, raw, "From"))
	}
	sum := sha256.Sum256(raw)
	if p.RawSize != int64(len(raw)) || p.RawSha256 != hex.EncodeToString(sum[:]) {
		t.Errorf("raw size/sha256 %d/%s, want %d/%x", p.RawSize, p.RawSha256, len(raw), sum)
	}
	if p.ID == "" || p.ThreadKey == "" || p.ParseStatus != "ok" {
		t.Errorf("id %q thread key %q status %q", p.ID, p.ThreadKey, p.ParseStatus)
	}
	if p.Envelope.MailFrom != "a@example.org" || len(p.Envelope.RcptTo) != 2 || p.Envelope.ClientIP != "192.0.2.7" {
		t.Errorf("envelope %+v", p.Envelope)
	}
	// The file has neither Date nor Message-ID: the warnings are part of the record.
	names := map[string]bool{}
	for _, w := range p.Warnings {
		names[w.Name] = true
	}
	if !names["date_missing"] || !names["message_id_missing"] {
		t.Errorf("warnings %+v", p.Warnings)
	}
}

func TestParseAttachment(t *testing.T) {
	file := corpus + "attachments/mailpit--regular-attachment.eml"
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	// The attachment is the one base64 line of the file.
	var want []byte
	for line := range strings.Lines(string(raw)) {
		if b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(line)); err == nil && len(b) > 16 {
			want = b
		}
	}
	if want == nil {
		t.Fatal("no base64 line in the corpus file")
	}
	sum := sha256.Sum256(want)
	// Two files give two records, in order.
	recs, err := parseOut(t, "", corpus+"plain/inbucket--basic.eml", file)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 2 {
		t.Fatalf("got %d records, want 2", len(recs))
	}
	atts := recs[1].Attachments
	if len(atts) != 1 {
		t.Fatalf("attachments %+v", atts)
	}
	a := atts[0]
	if a.Filename != "document.pdf" || a.Size != int64(len(want)) || a.Sha256 != hex.EncodeToString(sum[:]) {
		t.Errorf("attachment %+v, want document.pdf size %d sha256 %x", a, len(want), sum)
	}
	if a.BlobRef != nil {
		t.Errorf("blob ref %q without a blob store", *a.BlobRef)
	}
}

func TestParseStdin(t *testing.T) {
	msg := "From: Ann <ann@example.org>\r\nSubject: from stdin\r\nMessage-ID: <x1@example.org>\r\n\r\nhello\r\n"
	recs, err := parseOut(t, msg, "-")
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Subject != "from stdin" || recs[0].MessageID != "x1@example.org" ||
		recs[0].ThreadKey != "x1@example.org" || recs[0].From == nil || recs[0].From.Name != "Ann" {
		t.Fatalf("records %+v", recs)
	}
}

func TestParseErrors(t *testing.T) {
	t.Run("missing file", func(t *testing.T) {
		_, err := parseOut(t, "", corpus+"no/such.eml")
		if !errors.Is(err, fs.ErrNotExist) || app.ExitCode(err) == app.ExitOK {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("unreadable message", func(t *testing.T) {
		recs, err := parseOut(t, "// Not an RFC-822 Document", "-")
		if err == nil || failure.Classify(err) != failure.Parse || app.ExitCode(err) != app.ExitError {
			t.Fatalf("err = %v (class %s)", err, failure.Classify(err))
		}
		if len(recs) != 0 {
			t.Fatalf("printed %+v", recs)
		}
	})
	t.Run("no files", func(t *testing.T) {
		if code := app.ExitCode(run(t.Context(), app.Env{Args: []string{"parse"}, Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}})); code != app.ExitConfigError {
			t.Fatalf("exit code %d", code)
		}
	})
}

// A message above the inline limit streams through the temporary blob store (the claim check
// path of the service) and yields the same record as when it is inline.
func TestParseLargeInputThroughBlobStore(t *testing.T) {
	file := corpus + "attachments/mailpit--regular-attachment.eml"
	inline, err := parseOut(t, "", file)
	if err != nil {
		t.Fatal(err)
	}
	spooled, err := parseOut(t, "", "--inline-limit", "64", file)
	if err != nil {
		t.Fatal(err)
	}
	a, b := inline[0], spooled[0]
	if a.RawBlobRef != nil || b.RawBlobRef == nil {
		t.Fatalf("raw blob refs inline %v, spooled %v; want nil and set", a.RawBlobRef, b.RawBlobRef)
	}
	for _, r := range []*events.Parsed{&a, &b} {
		r.ID, r.ExternalID, r.RawBlobRef = "", "", nil
		r.ReceivedAt, r.ParsedAt = time.Time{}, time.Time{}
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if !bytes.Equal(ja, jb) {
		t.Fatalf("records differ:\ninline  %s\nspooled %s", ja, jb)
	}
}

func TestParseBench(t *testing.T) {
	env, out, _ := testEnv("-bench", "1ms", "-warmup", "0s", corpus+"plain/inbucket--basic.eml", "-")
	if err := parseFiles(t.Context(), env, strings.NewReader("Subject: hi\r\n\r\nbody\r\n")); err != nil {
		t.Fatal(err)
	}
	var res benchResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("decoding %q: %v", out, err)
	}
	if res.Parser != "mailpipe" || res.Files != 2 || res.Passes < 1 || res.Messages != 2*res.Passes ||
		res.MessagesPerS <= 0 || res.Statuses["ok"]+res.Statuses["partial"] != 2 || res.Errors != 0 {
		t.Errorf("result %+v", res)
	}
}
