package serde_test

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hamba/avro/v2"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/events/eventstest"
	"github.com/mailpipe/mailpipe/pkg/serde"
	"github.com/mailpipe/mailpipe/schemas"
)

func TestRoundTripEveryTopic(t *testing.T) {
	codec, err := serde.New(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	samples := eventstest.Samples()
	if len(samples) != len(schemas.Topics()) {
		t.Fatalf("samples cover %d topics, schemas have %d", len(samples), len(schemas.Topics()))
	}
	for topic, v := range samples {
		t.Run(topic, func(t *testing.T) {
			b, err := codec.Encode(topic, v)
			if err != nil {
				t.Fatal(err)
			}
			id, _, err := serde.Frame(b)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := codec.SchemaID(topic)
			if id != want || id == 0 {
				t.Fatalf("framed id %d, want %d (non-zero)", id, want)
			}
			got := reflect.New(reflect.TypeOf(v).Elem()).Interface()
			if err := codec.Decode(t.Context(), topic, b, got); err != nil {
				t.Fatal(err)
			}
			// Avro has no nil/empty distinction and time.Time carries a location pointer, so
			// compare the re-encoded bytes: equal bytes mean no field was lost or altered.
			again, err := codec.Encode(topic, got)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again, b) {
				t.Fatalf("round trip changed the value:\n got %+v\nwant %+v", got, v)
			}
		})
	}
}

// A subscriber has only the .avsc file and a generic Avro decoder: decode every topic's records
// that way, with no generated types, and check fields by their schema names.
func TestSubscriberDecodesWithOnlyTheAvscFile(t *testing.T) {
	codec, err := serde.New(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for topic, v := range eventstest.Samples() {
		t.Run(topic, func(t *testing.T) {
			b, err := codec.Encode(topic, v)
			if err != nil {
				t.Fatal(err)
			}
			src, err := os.ReadFile(filepath.Join("..", "..", "schemas", topic+".avsc"))
			if err != nil {
				t.Fatal(err)
			}
			schema, err := avro.ParseWithCache(string(src), "", &avro.SchemaCache{})
			if err != nil {
				t.Fatal(err)
			}
			if b[0] != 0 {
				t.Fatalf("magic byte %d", b[0])
			}
			var generic map[string]any
			if err := avro.Unmarshal(schema, b[5:], &generic); err != nil {
				t.Fatal(err)
			}
			// Every top-level field of the schema is present in the decoded record.
			for _, f := range schema.(*avro.RecordSchema).Fields() {
				if _, ok := generic[f.Name()]; !ok {
					t.Errorf("field %s missing from generic decode", f.Name())
				}
			}
			switch topic {
			case "mail.parsed.v1":
				if generic["subject"] != "Re: Grüße" || generic["parse_status"] != "ok" {
					t.Errorf("parsed fields: %v / %v", generic["subject"], generic["parse_status"])
				}
			case "mail.enriched.v1":
				msg := generic["message"].(map[string]any)
				if msg["thread_key"] != "root@example.com" {
					t.Errorf("enriched message.thread_key = %v", msg["thread_key"])
				}
			case "mail.routes.v1":
				if generic["pattern"] != "support+{tenant}@in.example.com" {
					t.Errorf("route pattern = %v", generic["pattern"])
				}
			}
		})
	}
}

// Every schema must stay backward compatible with its released copy: a reader on the new schema
// must decode what the released schema wrote. CI runs this test; a break fails the build.
func TestBackwardCompatibleWithReleased(t *testing.T) {
	for _, topic := range schemas.Topics() {
		t.Run(topic, func(t *testing.T) {
			rel, ok := schemas.ReleasedSource(topic)
			if !ok {
				t.Skipf("%s has no released schema yet", topic)
			}
			cur, _ := schemas.Source(topic)
			if err := serde.CheckBackward(cur, rel); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestCheckBackwardCatchesBreaks(t *testing.T) {
	rel, _ := schemas.ReleasedSource("mail.routes.v1")
	for _, tt := range []struct {
		name    string
		edit    func(string) string
		wantErr bool
	}{
		{"unchanged", func(s string) string { return s }, false},
		{"new field with default", func(s string) string {
			return strings.Replace(s, `"fields": [`, `"fields": [{"name":"x","type":"string","default":"","doc":"d"},`, 1)
		}, false},
		{"new field without default", func(s string) string {
			return strings.Replace(s, `"fields": [`, `"fields": [{"name":"x","type":"string","doc":"d"},`, 1)
		}, true},
		{"type change string to int", func(s string) string {
			return strings.Replace(s, `"name": "tenant",
      "type": "string"`, `"name": "tenant",
      "type": "int"`, 1)
		}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cur := tt.edit(rel)
			if cur == rel && tt.name != "unchanged" {
				t.Fatal("edit did not apply; the test fixture is stale")
			}
			err := serde.CheckBackward(cur, rel)
			if (err != nil) != tt.wantErr {
				t.Fatalf("CheckBackward error = %v, wantErr %v", err, tt.wantErr)
			}
		})
	}
}

// A record written by the released schema decodes with the current one (schema resolution).
func TestDecodesReleasedWriterIDs(t *testing.T) {
	codec, err := serde.New(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	rel, _ := schemas.ReleasedSource("mail.crm.v1")
	rs, err := serde.Parse(rel)
	if err != nil {
		t.Fatal(err)
	}
	v := eventstest.Samples()["mail.crm.v1"]
	body, err := avro.Marshal(rs, v)
	if err != nil {
		t.Fatal(err)
	}
	id := serde.DeterministicID(rs)
	framed := append([]byte{0, byte(id >> 24), byte(id >> 16), byte(id >> 8), byte(id)}, body...)
	got := reflect.New(reflect.TypeOf(v).Elem()).Interface()
	if err := codec.Decode(t.Context(), "mail.crm.v1", framed, got); err != nil {
		t.Fatal(err)
	}
	if o := got.(*events.CRMOutcome); o.Outcome != "created" || o.ObjectIds["webhook"] != "msg_1" || o.WrittenAt.IsZero() {
		t.Fatalf("got %+v", got)
	}
}

func TestDecodeRejectsBadInput(t *testing.T) {
	codec, err := serde.New(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	for _, tt := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"json", []byte(`{"id":"x"}`)},
		{"unknown id", []byte{0, 0x12, 0x34, 0x56, 0x78, 2, 'a'}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := codec.Decode(t.Context(), "mail.raw.v1", tt.b, &out); err == nil {
				t.Fatal("want an error")
			}
		})
	}
}

func TestRegistryAssignsIDs(t *testing.T) {
	reg := srfake.New()
	t.Cleanup(reg.Close)
	cl, err := sr.NewClient(sr.URLs(reg.URL()))
	if err != nil {
		t.Fatal(err)
	}
	codec, err := serde.New(t.Context(), serde.WithRegistry(cl))
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range schemas.Topics() {
		id, _ := codec.SchemaID(topic)
		ss, err := cl.SchemaByVersion(t.Context(), topic+"-value", -1)
		if err != nil {
			t.Fatalf("%s not registered: %v", topic, err)
		}
		if uint32(ss.ID) != id {
			t.Fatalf("%s: codec id %d, registry id %d", topic, id, ss.ID)
		}
	}
	// A second codec (another process) against the same registry agrees on ids and can decode.
	other, err := serde.New(t.Context(), serde.WithRegistry(cl))
	if err != nil {
		t.Fatal(err)
	}
	v := eventstest.Samples()["mail.lake.v1"]
	b, err := codec.Encode("mail.lake.v1", v)
	if err != nil {
		t.Fatal(err)
	}
	got, err := other.DecodeGeneric(t.Context(), b)
	if err != nil {
		t.Fatal(err)
	}
	if got.(map[string]any)["tenant"] != "acme" {
		t.Fatalf("generic decode = %v", got)
	}
}
