package schemas_test

import (
	"encoding/json"
	"testing"

	"github.com/mailpipe/mailpipe/schemas"
)

// Every field of every schema carries a doc string: subscribers read the .avsc files as the
// contract, so an undocumented field is a defect.
func TestEveryFieldHasDoc(t *testing.T) {
	topics := schemas.Topics()
	if len(topics) != 7 {
		t.Fatalf("got %d topics %v, want the 7 topics of ARCHITECTURE.md", len(topics), topics)
	}
	for _, topic := range topics {
		src, err := schemas.Source(topic)
		if err != nil {
			t.Fatal(err)
		}
		var root any
		if err := json.Unmarshal([]byte(src), &root); err != nil {
			t.Fatalf("%s: %v", topic, err)
		}
		walk(t, topic, root)
	}
}

func walk(t *testing.T, path string, node any) {
	t.Helper()
	switch n := node.(type) {
	case map[string]any:
		if n["type"] == "record" {
			if doc, _ := n["doc"].(string); doc == "" {
				t.Errorf("%s: record %v has no doc", path, n["name"])
			}
			fields, _ := n["fields"].([]any)
			for _, f := range fields {
				fm, _ := f.(map[string]any)
				if doc, _ := fm["doc"].(string); doc == "" {
					t.Errorf("%s: field %v has no doc", path, fm["name"])
				}
				walk(t, path+"."+fm["name"].(string), fm["type"])
			}
			return
		}
		for _, v := range n {
			walk(t, path, v)
		}
	case []any:
		for _, v := range n {
			walk(t, path, v)
		}
	}
}

// The schemas are self-contained (ADR 0001), so later topics carry their own copies of the
// Parsed and Classification records; each copy must equal its topic's exactly, or a field added
// to a stage's output would silently not reach later topics.
func TestParsedCopiesMatch(t *testing.T) {
	load := func(topic string) any {
		src, err := schemas.Source(topic)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := json.Unmarshal([]byte(src), &v); err != nil {
			t.Fatalf("%s: %v", topic, err)
		}
		return v
	}
	for _, c := range []struct {
		record, from string
		copies       []string
	}{
		{"Parsed", "mail.parsed.v1", []string{"mail.classified.v1", "mail.enriched.v1"}},
		{"Classification", "mail.classified.v1", []string{"mail.enriched.v1"}},
	} {
		want, err := json.Marshal(findRecord(load(c.from), c.record))
		if err != nil {
			t.Fatal(err)
		}
		for _, topic := range c.copies {
			got := findRecord(load(topic), c.record)
			if got == nil {
				t.Fatalf("%s has no %s record", topic, c.record)
			}
			b, err := json.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != string(want) {
				t.Errorf("%s: its %s record differs from %s.avsc; copy it over", topic, c.record, c.from)
			}
		}
	}
}

func findRecord(node any, name string) any {
	switch n := node.(type) {
	case map[string]any:
		if n["type"] == "record" && n["name"] == name {
			return n
		}
		for _, v := range n {
			if r := findRecord(v, name); r != nil {
				return r
			}
		}
	case []any:
		for _, v := range n {
			if r := findRecord(v, name); r != nil {
				return r
			}
		}
	}
	return nil
}
