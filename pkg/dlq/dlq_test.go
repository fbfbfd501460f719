package dlq_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/mailpipe/mailpipe/pkg/dlq"
	"github.com/mailpipe/mailpipe/pkg/failure"
	"github.com/mailpipe/mailpipe/pkg/kafka"
)

var (
	first = time.Date(2026, 11, 23, 12, 0, 0, 123456789, time.UTC)
	last  = first.Add(3 * time.Second)
)

func failed() *kgo.Record {
	return &kgo.Record{
		Topic:     kafka.TopicRaw,
		Partition: 7,
		Offset:    4242,
		Timestamp: first.Add(-time.Minute),
		Key:       []byte("thread-1"),
		Value:     []byte{0, 0, 0, 0, 1, 0xff, 0xfe},
		Headers: []kgo.RecordHeader{
			{Key: "traceparent", Value: []byte("00-0102030405060708090a0b0c0d0e0f10-0102030405060708-01")},
			{Key: "tenant", Value: []byte("acme")},
		},
	}
}

func info() dlq.Info {
	return dlq.Info{
		Stage:        "parser",
		Class:        failure.Parse,
		Message:      "decoding raw record: unexpected EOF",
		Attempts:     1,
		FirstFailure: first,
		LastFailure:  last,
		TraceID:      "0102030405060708090a0b0c0d0e0f10",
	}
}

func TestBuildKeepsRecordAndAddsHeaders(t *testing.T) {
	rec := failed()
	d := dlq.Build(rec, info())

	if d.Topic != kafka.TopicDLQ {
		t.Errorf("topic = %q, want %q", d.Topic, kafka.TopicDLQ)
	}
	if !bytes.Equal(d.Key, rec.Key) || !bytes.Equal(d.Value, rec.Value) {
		t.Errorf("key/value changed: %q %x", d.Key, d.Value)
	}
	want := map[string]string{
		"traceparent":               "00-0102030405060708090a0b0c0d0e0f10-0102030405060708-01",
		"tenant":                    "acme",
		dlq.HeaderOriginalTopic:     "mail.raw.v1",
		dlq.HeaderOriginalPartition: "7",
		dlq.HeaderOriginalOffset:    "4242",
		dlq.HeaderOriginalTimestamp: "2026-11-23T11:59:00.123456789Z",
		dlq.HeaderStage:             "parser",
		dlq.HeaderErrorClass:        "parse",
		dlq.HeaderErrorMessage:      "decoding raw record: unexpected EOF",
		dlq.HeaderAttempts:          "1",
		dlq.HeaderFirstFailure:      "2026-11-23T12:00:00.123456789Z",
		dlq.HeaderLastFailure:       "2026-11-23T12:00:03.123456789Z",
		dlq.HeaderTraceID:           "0102030405060708090a0b0c0d0e0f10",
	}
	got := map[string]string{}
	for _, h := range d.Headers {
		if _, dup := got[h.Key]; dup {
			t.Errorf("header %s repeated", h.Key)
		}
		got[h.Key] = string(h.Value)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("header %s = %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("headers = %v, want exactly %v", got, want)
	}
	if d.Headers[0].Key != "traceparent" || d.Headers[1].Key != "tenant" {
		t.Errorf("original headers are not first, in order: %v", d.Headers[:2])
	}
}

func TestParseRoundTrip(t *testing.T) {
	rec := failed()
	got, err := dlq.Parse(dlq.Build(rec, info()))
	if err != nil {
		t.Fatal(err)
	}
	want := info()
	want.OriginalTopic, want.OriginalPartition, want.OriginalOffset = rec.Topic, rec.Partition, rec.Offset
	want.OriginalTimestamp = rec.Timestamp
	if !equalInfo(got, want) {
		t.Fatalf("Parse(Build()) = %+v, want %+v", got, want)
	}
}

func equalInfo(a, b dlq.Info) bool {
	return a.OriginalTopic == b.OriginalTopic && a.OriginalPartition == b.OriginalPartition &&
		a.OriginalOffset == b.OriginalOffset && a.OriginalTimestamp.Equal(b.OriginalTimestamp) &&
		a.Stage == b.Stage && a.Class == b.Class && a.Message == b.Message && a.Attempts == b.Attempts &&
		a.FirstFailure.Equal(b.FirstFailure) && a.LastFailure.Equal(b.LastFailure) &&
		a.TraceID == b.TraceID && a.ReplayCount == b.ReplayCount
}

func TestBuildAfterReplay(t *testing.T) {
	// given a dead letter that was replayed once to its original topic and failed again
	d1 := dlq.Build(failed(), info())
	replayed := &kgo.Record{Topic: kafka.TopicRaw, Partition: 2, Offset: 9000, Key: d1.Key, Value: d1.Value, Headers: append(d1.Headers, kgo.RecordHeader{Key: dlq.HeaderReplayCount, Value: []byte("1")})}
	second := info()
	second.Attempts, second.Class = 5, failure.CRM5xx

	// when it is dead-lettered again
	d2 := dlq.Build(replayed, second)

	// then the old context is replaced, the replay count carried over
	got, err := dlq.Parse(d2)
	if err != nil {
		t.Fatal(err)
	}
	if got.OriginalPartition != 2 || got.OriginalOffset != 9000 || got.Attempts != 5 || got.Class != failure.CRM5xx || got.ReplayCount != 1 {
		t.Fatalf("second dead letter = %+v", got)
	}
}

func TestBuildTruncatesMessage(t *testing.T) {
	in := info()
	in.Message = strings.Repeat("é", dlq.MaxMessageBytes) + "\xff"
	d := dlq.Build(failed(), in)
	got, err := dlq.Parse(d)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Message) > dlq.MaxMessageBytes || !utf8.ValidString(got.Message) || len(got.Message) < dlq.MaxMessageBytes-1 {
		t.Fatalf("message of %d bytes (valid utf8 %v)", len(got.Message), utf8.ValidString(got.Message))
	}
}

func TestParseErrors(t *testing.T) {
	h := func(k, v string) kgo.RecordHeader { return kgo.RecordHeader{Key: k, Value: []byte(v)} }
	valid := dlq.Build(failed(), info()).Headers
	replace := func(k, v string) []kgo.RecordHeader {
		out := make([]kgo.RecordHeader, 0, len(valid))
		for _, x := range valid {
			if x.Key == k {
				x = h(k, v)
			}
			out = append(out, x)
		}
		return out
	}
	for _, tt := range []struct {
		name    string
		headers []kgo.RecordHeader
		want    string
	}{
		{"no headers", nil, "mailpipe.dlq.original.topic: missing"},
		{"bad partition", replace(dlq.HeaderOriginalPartition, "seven"), "original.partition"},
		{"partition overflow", replace(dlq.HeaderOriginalPartition, "4294967296"), "original.partition"},
		{"bad offset", replace(dlq.HeaderOriginalOffset, "-x"), "original.offset"},
		{"bad time", replace(dlq.HeaderFirstFailure, "yesterday"), "failure.first"},
		{"negative attempts", replace(dlq.HeaderAttempts, "-1"), "negative count"},
		{"empty topic", replace(dlq.HeaderOriginalTopic, ""), "original.topic: empty"},
		{"repeated", append(valid, h(dlq.HeaderStage, "x")), "mailpipe.dlq.stage: repeated"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := dlq.Parse(&kgo.Record{Headers: tt.headers})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse error = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, hs := range [][]kgo.RecordHeader{dlq.Build(failed(), info()).Headers, nil} {
		var keys, vals []string
		for _, h := range hs {
			keys = append(keys, h.Key)
			vals = append(vals, string(h.Value))
		}
		f.Add(strings.Join(keys, "\n"), strings.Join(vals, "\n"))
	}
	f.Add("mailpipe.dlq.original.partition", "-2147483649")
	f.Fuzz(func(t *testing.T, keys, vals string) {
		ks, vs := strings.Split(keys, "\n"), strings.Split(vals, "\n")
		rec := &kgo.Record{}
		for i, k := range ks {
			v := ""
			if i < len(vs) {
				v = vs[i]
			}
			rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
		}
		got, err := dlq.Parse(rec)
		if err != nil {
			if got != (dlq.Info{}) {
				t.Fatalf("Parse returned both an error and %+v", got)
			}
			return
		}
		// A parsed dead letter rebuilt from its own context parses to the same context, except
		// that the message is normalised (truncated, valid UTF-8).
		orig := &kgo.Record{Topic: got.OriginalTopic, Partition: got.OriginalPartition, Offset: got.OriginalOffset, Timestamp: got.OriginalTimestamp}
		if got.ReplayCount > 0 {
			orig.Headers = []kgo.RecordHeader{{Key: dlq.HeaderReplayCount, Value: fmt.Appendf(nil, "%d", got.ReplayCount)}}
		}
		again, err := dlq.Parse(dlq.Build(orig, got))
		if err != nil {
			t.Fatalf("rebuilt dead letter does not parse: %v", err)
		}
		again.Message = got.Message
		if got.Class == "" {
			again.Class = ""
		}
		if !equalInfo(again, got) {
			t.Fatalf("round trip changed the context:\n got  %+v\n want %+v", again, got)
		}
	})
}

func ExampleParse() {
	failedRec := &kgo.Record{Topic: "mail.raw.v1", Partition: 3, Offset: 17, Key: []byte("thread-1"), Value: []byte("raw bytes")}
	dead := dlq.Build(failedRec, dlq.Info{
		Stage: "parser", Class: failure.Parse, Message: "no usable MIME part", Attempts: 1,
		FirstFailure: first, LastFailure: first,
	})
	got, _ := dlq.Parse(dead)
	fmt.Println(dead.Topic, string(dead.Value), got.OriginalTopic, got.OriginalPartition, got.OriginalOffset, got.Class, got.Attempts)
	// Output: mail.dlq.v1 raw bytes mail.raw.v1 3 17 parse 1
}
