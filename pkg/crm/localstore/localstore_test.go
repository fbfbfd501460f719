package localstore_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/crm"
	"github.com/mailpipe/mailpipe/pkg/crm/crmtest"
	"github.com/mailpipe/mailpipe/pkg/crm/localstore"
	"github.com/mailpipe/mailpipe/pkg/failure"
)

func open(t *testing.T, path string, opts ...localstore.Option) *localstore.Store {
	t.Helper()
	s, err := localstore.Open(path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

// linesWith counts the lines of the file that carry externalID: the effect on disk, read
// independently of the store's index.
func linesWith(t *testing.T, path, externalID string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var e localstore.Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("unreadable line %q: %v", sc.Text(), err)
		}
		if e.ExternalID == externalID {
			n++
		}
	}
	return n
}

func TestConformance(t *testing.T) {
	crmtest.Run(t, func(t *testing.T) crmtest.Target {
		path := filepath.Join(t.TempDir(), "crm.jsonl")
		s := open(t, path)
		return crmtest.Target{Connector: s, Objects: func(id string) int { return linesWith(t, path, id) }}
	})
}

func TestConformanceInMemory(t *testing.T) {
	crmtest.Run(t, func(t *testing.T) crmtest.Target {
		s := open(t, "")
		return crmtest.Target{Connector: s, Objects: func(id string) int {
			if _, ok := s.Get(id); ok {
				return 1
			}
			return 0
		}}
	})
}

func TestUpsertOutcomesAndCallback(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dev", "crm.jsonl")
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	var written []localstore.Entry
	s := open(t, path, localstore.WithName("dev-crm"), localstore.WithClock(func() time.Time { return now }),
		localstore.WithOnWrite(func(e localstore.Entry) { mu.Lock(); written = append(written, e); mu.Unlock() }))

	a, b := crmtest.Message("a"), crmtest.Message("b")
	for _, tt := range []struct {
		name    string
		msg     string
		outcome string
		seq     string
	}{
		{"first a", "a", crm.OutcomeCreated, "1"},
		{"first b", "b", crm.OutcomeCreated, "2"},
		{"a again", "a", crm.OutcomeUnchanged, "1"},
		{"b again", "b", crm.OutcomeUnchanged, "2"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res, err := s.Upsert(t.Context(), crmtest.Message(tt.msg))
			if err != nil {
				t.Fatal(err)
			}
			if res.Outcome != tt.outcome || res.ObjectIDs[localstore.ObjectType] != tt.seq || res.Attempts != 1 {
				t.Fatalf("result = %+v, want %s entry %s", res, tt.outcome, tt.seq)
			}
		})
	}
	if s.Name() != "dev-crm" || s.Count() != 2 {
		t.Errorf("name %q count %d", s.Name(), s.Count())
	}
	e, ok := s.Get(a.Message.ExternalID)
	want := localstore.Entry{
		Seq: 1, ExternalID: a.Message.ExternalID, ID: a.Message.ID, ThreadKey: a.Message.ThreadKey, Tenant: "acme",
		From: "a@example.com", Subject: a.Message.Subject, Kind: "human", Queue: "sales", LeadScore: 12, WrittenAt: now,
	}
	if !ok || e != want {
		t.Errorf("Get = %+v, %v; want %+v", e, ok, want)
	}
	if len(written) != 2 || written[0].ExternalID != a.Message.ExternalID || written[1].ExternalID != b.Message.ExternalID {
		t.Errorf("callback saw %d entries, want one per new message", len(written))
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), a.Message.Text) || strings.Contains(string(raw), a.Message.HTML) {
		t.Error("the file holds message bodies")
	}
}

func TestReopenKeepsIdempotency(t *testing.T) {
	path := filepath.Join(t.TempDir(), "crm.jsonl")
	s, err := localstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	// given a message written before a restart
	if _, err := s.Upsert(t.Context(), crmtest.Message("before")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.Upsert(t.Context(), crmtest.Message("closed")); err == nil {
		t.Error("Upsert after Close succeeded")
	}

	// when the store is reopened and sees the message again
	s = open(t, path)
	res, err := s.Upsert(t.Context(), crmtest.Message("before"))
	if err != nil {
		t.Fatal(err)
	}

	// then it is unchanged and new entries continue the sequence
	if res.Outcome != crm.OutcomeUnchanged {
		t.Errorf("outcome after reopen = %q, want unchanged", res.Outcome)
	}
	res, err = s.Upsert(t.Context(), crmtest.Message("after"))
	if err != nil || res.ObjectIDs[localstore.ObjectType] != "2" {
		t.Errorf("next entry = %+v, %v; want seq 2", res, err)
	}
	if n := linesWith(t, path, crmtest.Message("before").Message.ExternalID); n != 1 {
		t.Errorf("lines = %d, want 1", n)
	}
}

func TestOpenRecoversTornTail(t *testing.T) {
	good := `{"seq":1,"external_id":"e1","id":"m1"}` + "\n"
	for _, tt := range []struct {
		name     string
		content  string
		wantIDs  []string
		wantFile string
		wantErr  string
	}{
		{"empty file", "", nil, "", ""},
		{"torn last line is dropped", good + `{"seq":2,"exter`, []string{"e1"}, good, ""},
		{"complete last line without newline is kept", good + `{"seq":2,"external_id":"e2"}`, []string{"e1", "e2"}, good + `{"seq":2,"external_id":"e2"}` + "\n", ""},
		{"blank lines are skipped", "\n" + good + "\n", []string{"e1"}, "\n" + good + "\n", ""},
		{"corrupt middle line is an error", good + "garbage\n" + good, nil, "", "line 2"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "crm.jsonl")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := localstore.Open(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Open err = %v, want one naming %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close(context.Background()) })
			var ids []string
			for _, e := range s.Entries() {
				ids = append(ids, e.ExternalID)
			}
			if strings.Join(ids, ",") != strings.Join(tt.wantIDs, ",") {
				t.Errorf("entries = %v, want %v", ids, tt.wantIDs)
			}
			raw, _ := os.ReadFile(path)
			if string(raw) != tt.wantFile {
				t.Errorf("file = %q, want %q", raw, tt.wantFile)
			}
			// A write after recovery lands on a line of its own.
			if _, err := s.Upsert(t.Context(), crmtest.Message("next")); err != nil {
				t.Fatal(err)
			}
			if n := linesWith(t, path, crmtest.Message("next").Message.ExternalID); n != 1 {
				t.Errorf("lines of the new entry = %d, want 1", n)
			}
		})
	}
}

func TestMissingExternalIDIsSchema(t *testing.T) {
	s := open(t, "")
	msg := crmtest.Message("x")
	msg.Message.ExternalID = ""
	if _, err := s.Upsert(t.Context(), msg); failure.Classify(err) != failure.Schema {
		t.Fatalf("err = %v, want schema class", err)
	}
}

func TestOpenRejectsEmptyName(t *testing.T) {
	if _, err := localstore.Open("", localstore.WithName("")); err == nil {
		t.Fatal("Open with an empty name succeeded")
	}
}
