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
