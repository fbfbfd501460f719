package thread_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mailpipe/mailpipe/pkg/thread"
)

// mapIndex is an in-memory Index for tests, with injectable failures.
type mapIndex struct {
	mu          sync.Mutex
	m           map[string]string
	lookupErr   error
	rememberErr error
}

func newIndex() *mapIndex { return &mapIndex{m: map[string]string{}} }

func (x *mapIndex) Lookup(_ context.Context, id string) (string, bool, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.lookupErr != nil {
		return "", false, x.lookupErr
	}
	k, ok := x.m[id]
	return k, ok, nil
}

func (x *mapIndex) Remember(_ context.Context, id, key string) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.rememberErr != nil {
		return x.rememberErr
	}
	x.m[id] = key
	return nil
}

func TestKey(t *testing.T) {
	down := errors.New("redis down")
	synth := thread.SyntheticID(thread.Headers{From: "a@x", Subject: "hi", BodyDigest: "d"})
	for _, tt := range []struct {
		name       string
		h          thread.Headers
		index      map[string]string
		lookupErr  error
		remErr     error
		noIndex    bool
		want       thread.Result
		wantErr    error
		remembered map[string]string // expected index content afterwards
	}{
		{
			name: "root",
			h:    thread.Headers{MessageID: "<Root@Example.COM>"},
			want: thread.Result{Key: "Root@example.com", Source: thread.SourceMessageID, MessageID: "Root@example.com"},
		},
		{
			name:       "first reference when the index does not know the parent",
			h:          thread.Headers{MessageID: "<r2@x>", InReplyTo: "<r1@x>", References: "<root@x>\r\n <r1@x>"},
			want:       thread.Result{Key: "root@x", Source: thread.SourceReferences, MessageID: "r2@x"},
			remembered: map[string]string{"r2@x": "root@x"},
		},
		{
			// r1 went to other@x (its mailer broke the chain); r2 must follow it there, or it
			// could be written before the message it answers.
			name:       "a parent the index knows wins over References",
			h:          thread.Headers{MessageID: "<r2@x>", InReplyTo: "<r1@x>", References: "<root@x>\r\n <r1@x>"},
			index:      map[string]string{"r1@x": "other@x"},
			want:       thread.Result{Key: "other@x", Source: thread.SourceIndex, MessageID: "r2@x"},
			remembered: map[string]string{"r1@x": "other@x", "r2@x": "other@x"},
		},
		{
			name:       "without In-Reply-To the parent is the last reference",
			h:          thread.Headers{MessageID: "<r2@x>", References: "<root@x> <r1@x>"},
			index:      map[string]string{"r1@x": "other@x"},
			want:       thread.Result{Key: "other@x", Source: thread.SourceIndex, MessageID: "r2@x"},
			remembered: map[string]string{"r1@x": "other@x", "r2@x": "other@x"},
		},
		{
			name:       "trimmed references: the first id left is a reply the index knows",
			h:          thread.Headers{MessageID: "<r5@x>", InReplyTo: "<r4@x>", References: "<r3@x> <r4@x>"},
			index:      map[string]string{"r3@x": "root@x"}, // r4's entry expired, say
			want:       thread.Result{Key: "root@x", Source: thread.SourceIndex, MessageID: "r5@x"},
			remembered: map[string]string{"r3@x": "root@x", "r5@x": "root@x"},
		},
		{
			name:      "references lookup error degrades to the first id",
			h:         thread.Headers{MessageID: "<r@x>", References: "<r3@x> <r4@x>"},
			lookupErr: down,
			want:      thread.Result{Key: "r3@x", Source: thread.SourceReferences, MessageID: "r@x"},
			wantErr:   down,
			// The key actually used is remembered, so r's replies follow r's partition.
			remembered: map[string]string{"r@x": "r3@x"},
		},
		{
			name:       "garbage before references",
			h:          thread.Headers{MessageID: "<r@x>", References: "(from list) junk <root@x> <p@x>"},
			want:       thread.Result{Key: "root@x", Source: thread.SourceReferences, MessageID: "r@x"},
			remembered: map[string]string{"r@x": "root@x"},
		},
		{
			name:       "empty references fall through to in-reply-to",
			h:          thread.Headers{MessageID: "<r@x>", References: " <> ", InReplyTo: "<p@x>"},
			index:      map[string]string{"p@x": "root@x"},
			want:       thread.Result{Key: "root@x", Source: thread.SourceIndex, MessageID: "r@x"},
			remembered: map[string]string{"p@x": "root@x", "r@x": "root@x"},
		},
		{
			name:       "in-reply-to unknown to the index",
			h:          thread.Headers{MessageID: "<r@x>", InReplyTo: "<P@X>"},
			want:       thread.Result{Key: "P@x", Source: thread.SourceInReplyTo, MessageID: "r@x"},
			remembered: map[string]string{"r@x": "P@x"},
		},
		{
			name:    "in-reply-to without index",
			h:       thread.Headers{MessageID: "<r@x>", InReplyTo: "<p@x>"},
			noIndex: true,
			want:    thread.Result{Key: "p@x", Source: thread.SourceInReplyTo, MessageID: "r@x"},
		},
		{
			name:      "lookup error degrades to the parent id",
			h:         thread.Headers{MessageID: "<r@x>", InReplyTo: "<p@x>"},
			lookupErr: down,
			want:      thread.Result{Key: "p@x", Source: thread.SourceInReplyTo, MessageID: "r@x"},
			wantErr:   down,
			// The key actually used is remembered, so r's replies follow r's partition.
			remembered: map[string]string{"r@x": "p@x"},
		},
		{
			name:    "remember error keeps the result",
			h:       thread.Headers{MessageID: "<r@x>", References: "<root@x>"},
			remErr:  down,
			want:    thread.Result{Key: "root@x", Source: thread.SourceReferences, MessageID: "r@x"},
			wantErr: down,
		},
		{
			name: "no ids at all",
			h:    thread.Headers{From: "A <a@x>", Subject: " hi ", BodyDigest: "d"},
			want: thread.Result{Key: synth, Source: thread.SourceSynthetic, MessageID: synth},
		},
		{
			name: "reply without own id is keyed but not remembered",
			h:    thread.Headers{From: "a@x", Subject: "hi", BodyDigest: "d", InReplyTo: "<p@x>"},
			want: thread.Result{Key: "p@x", Source: thread.SourceInReplyTo, MessageID: synth},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			idx := newIndex()
			for k, v := range tt.index {
				idx.m[k] = v
			}
			idx.lookupErr, idx.rememberErr = tt.lookupErr, tt.remErr
			var index thread.Index = idx
			if tt.noIndex {
				index = nil
			}
			got, err := thread.Key(t.Context(), tt.h, index)
			if got != tt.want {
				t.Errorf("Key = %+v, want %+v", got, tt.want)
			}
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
			want := tt.remembered
			if want == nil {
				want = tt.index
			}
			if tt.remErr == nil && !tt.noIndex && !equalMaps(idx.m, want) {
				t.Errorf("index = %v, want %v", idx.m, want)
			}
		})
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestConversationWithoutReferences(t *testing.T) {
	// given a root and replies whose mailers send only In-Reply-To
	idx := newIndex()
	msgs := []thread.Headers{
		{MessageID: "<root@x>"},
		{MessageID: "<r1@x>", InReplyTo: "<root@x>"},
		{MessageID: "<r2@x>", InReplyTo: "<r1@x>"},
		{MessageID: "<r3@x>", InReplyTo: "<r2@x>"},
	}
	// when each is keyed in order
	for i, h := range msgs {
		got, err := thread.Key(t.Context(), h, idx)
		if err != nil {
			t.Fatal(err)
		}
		// then all share the root's key
		if got.Key != "root@x" {
			t.Errorf("message %d: key %q, want root@x", i, got.Key)
		}
	}
}

func TestConversationWithTrimmedReferences(t *testing.T) {
	// given a conversation whose later mailers keep only the last two ids of References
	idx := newIndex()
	msgs := []thread.Headers{
		{MessageID: "<root@x>"},
		{MessageID: "<r1@x>", InReplyTo: "<root@x>", References: "<root@x>"},
		{MessageID: "<r2@x>", InReplyTo: "<r1@x>", References: "<root@x> <r1@x>"},
		{MessageID: "<r3@x>", InReplyTo: "<r2@x>", References: "<r1@x> <r2@x>"},
		{MessageID: "<r4@x>", InReplyTo: "<r3@x>", References: "<r2@x> <r3@x>"},
	}
	// when each is keyed in order, then all share the root's key
	for i, h := range msgs {
		got, err := thread.Key(t.Context(), h, idx)
		if err != nil {
			t.Fatal(err)
		}
		if got.Key != "root@x" {
			t.Errorf("message %d: key %q, want root@x", i, got.Key)
		}
	}
}

func TestSyntheticID(t *testing.T) {
	base := thread.Headers{From: "Ogone <noreply@ogone.com>", Date: "Tue, 1 Oct 2013 00:42:18 +0200", Subject: "order 1", BodyDigest: "abc"}
	same := []func(h *thread.Headers){
		func(h *thread.Headers) { h.From = "NOREPLY@ogone.com" },
		func(h *thread.Headers) { h.Date = "Mon, 30 Sep 2013 22:42:18 +0000" },
		func(h *thread.Headers) { h.Subject = "order\r\n 1 " },
		func(h *thread.Headers) { h.InReplyTo = "<ignored@x>" },
	}
	different := []func(h *thread.Headers){
		func(h *thread.Headers) { h.From = "other@ogone.com" },
		func(h *thread.Headers) { h.Date = "Tue, 1 Oct 2013 00:42:19 +0200" },
		func(h *thread.Headers) { h.Subject = "order 2" },
		func(h *thread.Headers) { h.BodyDigest = "abd" },
	}
	want := thread.SyntheticID(base)
	if !strings.HasPrefix(want, thread.SyntheticPrefix) || len(want) != len(thread.SyntheticPrefix)+64 {
		t.Fatalf("SyntheticID = %q", want)
	}
	for i, f := range same {
		h := base
		f(&h)
		if got := thread.SyntheticID(h); got != want {
			t.Errorf("same[%d]: %q != %q", i, got, want)
		}
	}
	for i, f := range different {
		h := base
		f(&h)
		if got := thread.SyntheticID(h); got == want {
			t.Errorf("different[%d]: collides", i)
		}
	}
	// Unparsable dates still contribute, whitespace-collapsed.
	a, b := base, base
	a.Date, b.Date = "yesterday  noon", "yesterday noon"
	if thread.SyntheticID(a) != thread.SyntheticID(b) {
		t.Error("unparsable date not collapsed")
	}
}

// corpusDir finds the shared real-world corpus beside the repository (shared/ next to main/).
func corpusDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("MAILPIPE_CORPUS"); d != "" {
		return d
	}
	d, err := filepath.Abs(filepath.Join("..", "..", "..", "shared", "corpus"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(d, "MANIFEST.tsv")); err != nil {
		t.Fatalf("shared corpus not found at %s (set MAILPIPE_CORPUS): %v", d, err)
	}
	return d
}

func readHeaders(t *testing.T, path string) thread.Headers {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	msg, err := mail.ReadMessage(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	body, err := io.ReadAll(msg.Body)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	return thread.FromMail(msg.Header, hex.EncodeToString(sum[:]))
}

func TestCorpus(t *testing.T) {
	dir := corpusDir(t)
	for _, tt := range []struct {
		file   string
		want   string // "" with SourceSynthetic: only the prefix is checked
		source thread.Source
	}{
		// RFC 2822 appendix A.2: Mary's reply and John's reply to it share the root's key.
		{"plain/mail-gem--rfc2822-example06.eml", "1234@local.machine.example", thread.SourceReferences},
		{"headers/mail--rfc2822--example07.eml", "1234@local.machine.example", thread.SourceReferences},
		// Usenet-style References with four ids: the first one is the root.
		{"multipart/mimekit--messages-epilogue.eml", "3ohapq$h3b@gandalf.rutgers.edu", thread.SourceReferences},
		// A bounce threads with the message it bounces; id-left case is kept.
		{"bounces/sisimai--maildir-bsd-lhost-googlegroups-03.eml", "66C1F946-C1BB-4CC3-BE6C-E59D77ADA7C5@example.jp", thread.SourceReferences},
		// A plain message without References or In-Reply-To is its own root.
		{"plain/inbucket--basic.eml", "", thread.SourceSynthetic},
		{"plain/php-mmp--m0009.eml", "", thread.SourceSynthetic},
	} {
		t.Run(filepath.Base(tt.file), func(t *testing.T) {
			h := readHeaders(t, filepath.Join(dir, tt.file))
			got, err := thread.Key(t.Context(), h, newIndex())
			if err != nil {
				t.Fatal(err)
			}
			if got.Source != tt.source {
				t.Errorf("source = %s, want %s", got.Source, tt.source)
			}
			if tt.want != "" && got.Key != tt.want {
				t.Errorf("key = %q, want %q", got.Key, tt.want)
			}
			if tt.source == thread.SourceSynthetic && (got.Key != thread.SyntheticID(h) || got.MessageID != got.Key) {
				t.Errorf("synthetic result %+v, want key = message id = %s", got, thread.SyntheticID(h))
			}
		})
	}
}

func FuzzThreadKey(f *testing.F) {
	f.Add("<a@x>", "<p@x>", "<root@x> <p@x>", "A <a@x>", "Tue, 1 Oct 2013 00:42:18 +0200", "Re: hi")
	f.Add("", "", "", "", "", "")
	f.Add("(c)", "garbage", "<<>><", "\xff", "not a date", "=?utf-8?q?x?=")
	f.Fuzz(func(t *testing.T, msgID, inReplyTo, references, from, date, subject string) {
		h := thread.Headers{MessageID: msgID, InReplyTo: inReplyTo, References: references, From: from, Date: date, Subject: subject}
		idx := newIndex()
		a, err := thread.Key(t.Context(), h, idx)
		if err != nil {
			t.Fatalf("in-memory index returned %v", err)
		}
		if a.Key == "" || a.MessageID == "" || a.Source == "" {
			t.Fatalf("incomplete result %+v", a)
		}
		if strings.ContainsAny(a.Key, " \t\r\n<>") {
			t.Fatalf("key %q holds whitespace or brackets", a.Key)
		}
		// Deterministic, with and without an index that now knows the message.
		b, _ := thread.Key(t.Context(), h, nil)
		c, _ := thread.Key(t.Context(), h, idx)
		if b.MessageID != a.MessageID || c != a {
			t.Fatalf("not deterministic: %+v / %+v / %+v", a, b, c)
		}
		if a.Source != thread.SourceIndex && b != a {
			t.Fatalf("index changed a header-only result: %+v vs %+v", a, b)
		}
	})
}
