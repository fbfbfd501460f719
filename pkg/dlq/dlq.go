// Package dlq defines the dead-letter record format: the header names that carry the error
// context, [Build] to turn a failed record into a dead letter, and [Parse] to read the context
// back (for `mailpipe dlq list/show/replay`).
//
// A dead letter keeps the failed record's key and value bytes untouched and all its headers; the
// error context is added as "mailpipe.dlq.*" headers, in the spirit of Kafka Connect's
// "__connect.errors.*". Header values are UTF-8 text: decimal integers, RFC 3339 UTC times with
// nanoseconds, and the error class string of package failure, so kcat and other ecosystems can
// read them without our code.
package dlq

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/failure"
	"github.com/mailpipe/mailpipe/pkg/kafka"
)

// Header names. They are part of the wire contract of mail.dlq.v1: do not rename them.
const (
	// HeaderPrefix starts every header this package writes.
	HeaderPrefix = "mailpipe.dlq."

	HeaderOriginalTopic     = HeaderPrefix + "original.topic"     // topic the failed record was read from
	HeaderOriginalPartition = HeaderPrefix + "original.partition" // its partition, decimal
	HeaderOriginalOffset    = HeaderPrefix + "original.offset"    // its offset, decimal
	HeaderOriginalTimestamp = HeaderPrefix + "original.timestamp" // its record timestamp, RFC 3339
	HeaderStage             = HeaderPrefix + "stage"              // stage that gave up (parser, classifier, …)
	HeaderErrorClass        = HeaderPrefix + "error.class"        // failure.Class of the last error
	HeaderErrorMessage      = HeaderPrefix + "error.message"      // last error text, at most MaxMessageBytes
	HeaderAttempts          = HeaderPrefix + "attempts"           // handler invocations, first one included
	HeaderFirstFailure      = HeaderPrefix + "failure.first"      // time of the first failed attempt, RFC 3339
	HeaderLastFailure       = HeaderPrefix + "failure.last"       // time of the last failed attempt, RFC 3339
	HeaderTraceID           = HeaderPrefix + "trace.id"           // W3C trace id (32 hex digits), if known

	// HeaderReplayCount counts how often the record was replayed from the DLQ to its original
	// topic. The replay tool increments it on the replayed record; [Build] carries it into the
	// next dead letter so a record that keeps failing shows its history.
	HeaderReplayCount = HeaderPrefix + "replay.count"
)

// MaxMessageBytes caps the error message header. Error texts can embed remote responses; the cap
// keeps dead letters small and bounds what an upstream can push into our headers.
const MaxMessageBytes = 1024

// Info is the error context of a dead letter.
type Info struct {
	// Original coordinates of the failed record. [Build] takes them from the record itself and
	// ignores these fields; [Parse] fills them.
	OriginalTopic     string
	OriginalPartition int32
	OriginalOffset    int64
	OriginalTimestamp time.Time

	Stage        string        // stage name, required
	Class        failure.Class // class of the last error, required
	Message      string        // text of the last error; cut to MaxMessageBytes
	Attempts     int           // handler invocations including the first, >= 1
	FirstFailure time.Time     // when the first attempt failed
	LastFailure  time.Time     // when the last attempt failed
	TraceID      string        // W3C trace id, empty if unknown

	// ReplayCount is read by [Parse]; [Build] takes it from rec's header and ignores the field.
	ReplayCount int
}

// Build returns the dead letter for rec, the record that failed: same key, same value bytes
// (shared, not copied: do not modify either afterwards), rec's headers followed by the
// error-context headers, and Topic [kafka.TopicDLQ] (set Topic to send elsewhere). Partition,
// offset and timestamp are left for the producer. mailpipe.dlq.* headers already on rec (from an
// earlier dead-lettering that was replayed) are replaced, except the replay count, which is kept.
func Build(rec *kgo.Record, info Info) *kgo.Record {
	headers := make([]kgo.RecordHeader, 0, len(rec.Headers)+12)
	replays := ""
	for _, h := range rec.Headers {
		switch {
		case h.Key == HeaderReplayCount:
			replays = string(h.Value)
		case strings.HasPrefix(h.Key, HeaderPrefix):
		default:
			headers = append(headers, h)
		}
	}
	add := func(k, v string) { headers = append(headers, kgo.RecordHeader{Key: k, Value: []byte(v)}) }
	add(HeaderOriginalTopic, rec.Topic)
	add(HeaderOriginalPartition, strconv.FormatInt(int64(rec.Partition), 10))
	add(HeaderOriginalOffset, strconv.FormatInt(rec.Offset, 10))
	if !rec.Timestamp.IsZero() {
		add(HeaderOriginalTimestamp, formatTime(rec.Timestamp))
	}
	add(HeaderStage, info.Stage)
	add(HeaderErrorClass, string(info.Class))
	add(HeaderErrorMessage, truncate(info.Message, MaxMessageBytes))
	add(HeaderAttempts, strconv.Itoa(info.Attempts))
	add(HeaderFirstFailure, formatTime(info.FirstFailure))
	add(HeaderLastFailure, formatTime(info.LastFailure))
	if info.TraceID != "" {
		add(HeaderTraceID, info.TraceID)
	}
	if replays != "" {
		add(HeaderReplayCount, replays)
	}
	return &kgo.Record{
		Topic:   kafka.TopicDLQ,
		Key:     rec.Key,
		Value:   rec.Value,
		Headers: headers,
	}
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence, and replaces invalid
// UTF-8 so the header is always valid text.
func truncate(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// Parse reads the error context from a dead letter built by [Build]. The original topic,
// partition, offset, stage and error class are required; the other headers are optional, but
// present ones must be well-formed. The error lists every problem.
func Parse(rec *kgo.Record) (Info, error) {
	var info Info
	var errs []error
	seen := map[string]bool{}
	for _, h := range rec.Headers {
		if !strings.HasPrefix(h.Key, HeaderPrefix) {
			continue
		}
		if seen[h.Key] {
			errs = append(errs, fmt.Errorf("header %s: repeated", h.Key))
			continue
		}
		seen[h.Key] = true
		v := string(h.Value)
		var err error
		switch h.Key {
		case HeaderOriginalTopic:
			info.OriginalTopic = v
		case HeaderOriginalPartition:
			var p int64
			p, err = strconv.ParseInt(v, 10, 32)
			info.OriginalPartition = int32(p)
		case HeaderOriginalOffset:
			info.OriginalOffset, err = strconv.ParseInt(v, 10, 64)
		case HeaderOriginalTimestamp:
			info.OriginalTimestamp, err = parseTime(v)
		case HeaderStage:
			info.Stage = v
		case HeaderErrorClass:
			info.Class = failure.Class(v)
		case HeaderErrorMessage:
			info.Message = v
		case HeaderAttempts:
			info.Attempts, err = parseCount(v)
		case HeaderFirstFailure:
			info.FirstFailure, err = parseTime(v)
		case HeaderLastFailure:
			info.LastFailure, err = parseTime(v)
		case HeaderTraceID:
			info.TraceID = v
		case HeaderReplayCount:
			info.ReplayCount, err = parseCount(v)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("header %s: %w", h.Key, err))
		}
	}
	for _, k := range []string{HeaderOriginalTopic, HeaderOriginalPartition, HeaderOriginalOffset, HeaderStage, HeaderErrorClass} {
		if !seen[k] {
			errs = append(errs, fmt.Errorf("header %s: missing", k))
		}
	}
	if seen[HeaderOriginalTopic] && info.OriginalTopic == "" {
		errs = append(errs, fmt.Errorf("header %s: empty", HeaderOriginalTopic))
	}
	if err := errors.Join(errs...); err != nil {
		return Info{}, fmt.Errorf("parsing dead letter: %w", err)
	}
	return info, nil
}

func parseTime(v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	return t.UTC(), err
}

func parseCount(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, err
	}
	if n < 0 {
		return 0, errors.New("negative count")
	}
	return n, nil
}
