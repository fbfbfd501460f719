// Package localstore is the crm connector `mailpipe dev` uses in place of a real CRM: it appends
// one JSON line per message to a local file and is idempotent by external id, across restarts
// too, because Open reads the file back. A second upsert of a message reports
// crm.OutcomeUnchanged and writes nothing.
//
// Each line is an [Entry]: ids, tenant, sender address, subject and classification, not the
// bodies. The file is for a developer's eyes on their own machine; it is not a production store.
package localstore

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/mailpipe/mailpipe/pkg/crm"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/failure"
)

// DefaultName is the target name unless WithName sets another.
const DefaultName = "local"

// ObjectType is the key of the entry's sequence number in Result.ObjectIDs.
const ObjectType = "entry"

// Entry is one line of the store's file.
type Entry struct {
	// Seq numbers entries from 1 in write order.
	Seq        int       `json:"seq"`
	ExternalID string    `json:"external_id"`
	ID         string    `json:"id"`
	ThreadKey  string    `json:"thread_key"`
	Tenant     string    `json:"tenant"`
	From       string    `json:"from"`
	Subject    string    `json:"subject"`
	Kind       string    `json:"kind"`
	Queue      string    `json:"queue"`
	LeadScore  float64   `json:"lead_score"`
	WrittenAt  time.Time `json:"written_at"`
}

// Option configures a [Store].
type Option interface{ apply(*Store) }

type optionFunc func(*Store)

func (f optionFunc) apply(s *Store) { f(s) }

// WithName sets the target name, default "local".
func WithName(name string) Option { return optionFunc(func(s *Store) { s.name = name }) }

// WithClock sets the clock for Entry.WrittenAt.
func WithClock(now func() time.Time) Option { return optionFunc(func(s *Store) { s.now = now }) }

// WithOnWrite sets a callback called once per newly written entry (not for deduped upserts),
// after the line is on disk and outside the store's lock, so it may call the store. `mailpipe
// dev` logs one line per message with it. It must not block for long: Upsert waits for it.
func WithOnWrite(fn func(Entry)) Option { return optionFunc(func(s *Store) { s.onWrite = fn }) }

// Store is the local CRM stand-in. It is safe for concurrent use.
type Store struct {
	name    string
	now     func() time.Time
	onWrite func(Entry)

	mu     sync.Mutex
	file   *os.File // nil for a memory-only store or after Close
	size   int64    // end of the last complete line in file
	closed bool
	byID   map[string]Entry
	order  []string
}

var (
	_ crm.Connector = (*Store)(nil)
	_ crm.Closer    = (*Store)(nil)
)

// Open opens (creating it and its directory if needed) the JSON-lines file at path and loads
// the entries already in it. An empty path gives a store that keeps entries in memory only.
//
// A last line cut short by a crash (no trailing newline, not valid JSON) was never confirmed to
// a caller, so Open drops it and truncates the file there; any other unreadable line is an
// error naming its line number.
func Open(path string, opts ...Option) (*Store, error) {
	s := &Store{name: DefaultName, now: time.Now, byID: map[string]Entry{}}
	for _, o := range opts {
		o.apply(s)
	}
	if s.name == "" {
		return nil, errors.New("opening local store: name must not be empty")
	}
	if path == "" {
		return s, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("opening local store: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("opening local store: %w", err)
	}
	size, err := s.load(f)
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("loading local store %s: %w", path, err)
	}
	s.file, s.size = f, size
	return s, nil
}

// load reads the entries of f, truncates a torn tail, and leaves the offset at the end of the
// last complete line, which it returns.
func (s *Store) load(f *os.File) (int64, error) {
	r := bufio.NewReader(f)
	var good int64
	for lineNo := 1; ; lineNo++ {
		line, err := r.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			if len(bytes.TrimSpace(line)) > 0 {
				var e Entry
				if json.Unmarshal(line, &e) == nil && e.ExternalID != "" {
					// A complete record missing only its newline: keep it and restore the newline.
					s.index(e)
					if _, err := f.WriteAt([]byte{'\n'}, good+int64(len(line))); err != nil {
						return 0, err
					}
					good += int64(len(line)) + 1
				}
			}
			break
		}
		if err != nil {
			return 0, err
		}
		if len(bytes.TrimSpace(line)) == 0 {
			good += int64(len(line))
			continue
		}
		var e Entry
		if err := json.Unmarshal(line, &e); err != nil || e.ExternalID == "" {
			return 0, fmt.Errorf("line %d is not an entry", lineNo)
		}
		s.index(e)
		good += int64(len(line))
	}
	if err := f.Truncate(good); err != nil {
		return 0, err
	}
	_, err := f.Seek(good, io.SeekStart)
	return good, err
}

// index adds e; a repeated external id (a file edited by hand) keeps the first entry.
func (s *Store) index(e Entry) {
	if _, ok := s.byID[e.ExternalID]; ok {
		return
	}
	s.byID[e.ExternalID] = e
	s.order = append(s.order, e.ExternalID)
}

// Name returns the target name.
func (s *Store) Name() string { return s.name }

// Upsert writes rec unless its external id is already stored: OutcomeCreated the first time,
// OutcomeUnchanged afterwards, both with ObjectIDs {"entry": seq}. An expired or cancelled ctx
// returns its error (a deadline classifies as failure.Timeout) without writing.
func (s *Store) Upsert(ctx context.Context, rec *events.Enriched) (crm.Result, error) {
	if err := ctx.Err(); err != nil {
		return crm.Result{}, fmt.Errorf("writing to local store: %w", err)
	}
	id := rec.Message.ExternalID
	if id == "" {
		return crm.Result{}, failure.New(failure.Schema, "writing to local store: message has no external id")
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return crm.Result{}, errors.New("writing to local store: store is closed")
	}
	if e, ok := s.byID[id]; ok {
		s.mu.Unlock()
		return crm.Result{Outcome: crm.OutcomeUnchanged, ObjectIDs: objectIDs(e), Attempts: 1}, nil
	}
	e := newEntry(rec, len(s.order)+1, s.now().UTC())
	if s.file != nil {
		n, err := appendLine(s.file, e)
		if err != nil {
			// Cut a partial line off again, so later lines do not follow garbage.
			_ = s.file.Truncate(s.size)
			_, _ = s.file.Seek(s.size, io.SeekStart)
			s.mu.Unlock()
			return crm.Result{}, fmt.Errorf("writing to local store: %w", err)
		}
		s.size += n
	}
	s.index(e)
	s.mu.Unlock()
	if s.onWrite != nil {
		s.onWrite(e)
	}
	return crm.Result{Outcome: crm.OutcomeCreated, ObjectIDs: objectIDs(e), Attempts: 1}, nil
}

// Count returns the number of stored entries.
func (s *Store) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.order)
}

// Get returns the entry of externalID.
func (s *Store) Get(externalID string) (Entry, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.byID[externalID]
	return e, ok
}

// Entries returns every entry in write order.
func (s *Store) Entries() []Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Entry, 0, len(s.order))
	for _, id := range s.order {
		out = append(out, s.byID[id])
	}
	return out
}

// Close closes the file. It is idempotent; Upsert fails after it.
func (s *Store) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.file == nil {
		return nil
	}
	err := s.file.Close()
	s.file = nil
	if err != nil {
		return fmt.Errorf("closing local store: %w", err)
	}
	return nil
}

func newEntry(rec *events.Enriched, seq int, now time.Time) Entry {
	e := Entry{
		Seq:        seq,
		ExternalID: rec.Message.ExternalID,
		ID:         rec.Message.ID,
		ThreadKey:  rec.Message.ThreadKey,
		Tenant:     rec.Message.Tenant,
		Subject:    rec.Message.Subject,
		Kind:       rec.Classification.Kind,
		Queue:      rec.Classification.Queue,
		LeadScore:  rec.Classification.LeadScore,
		WrittenAt:  now,
	}
	if rec.Message.From != nil {
		e.From = rec.Message.From.Address
	}
	return e
}

// appendLine writes e as one line in a single write and syncs it, so a crash leaves either the
// whole line or a torn tail that Open drops.
func appendLine(f *os.File, e Entry) (int64, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return 0, err
	}
	n, err := f.Write(append(b, '\n'))
	if err != nil {
		return 0, err
	}
	return int64(n), f.Sync()
}

func objectIDs(e Entry) map[string]string {
	return map[string]string{ObjectType: strconv.Itoa(e.Seq)}
}
