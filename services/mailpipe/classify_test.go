package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailpipe/mailpipe/pkg/events"
)

// `mailpipe classify` prints the classified record of a corpus bounce, and a rules file changes
// its lead score and queue.
func TestClassifyCommand(t *testing.T) {
	file := corpus + "bounces/enmime--dsn-testdata-simple_dsn.eml"
	run := func(args ...string) events.Classified {
		t.Helper()
		env, out, errs := testEnv(append(args, file)...)
		if err := runClassify(t.Context(), env); err != nil {
			t.Fatalf("classify: %v\n%s", err, errs)
		}
		var rec events.Classified
		if err := json.Unmarshal(out.Bytes(), &rec); err != nil {
			t.Fatalf("decoding %q: %v", out, err)
		}
		return rec
	}
	rec := run("--mail-from", "")
	cl := rec.Classification
	if cl.Kind != "bounce" || cl.Bounce == nil || cl.Bounce.Recipient == "" || rec.Message.Subject == "" || cl.RulesVersion == "" {
		t.Fatalf("classification %+v", cl)
	}
	rules := filepath.Join(t.TempDir(), "r.yaml")
	src := "version: t-1\nscore_rules:\n  - name: all\n    when: 'true'\n    points: 7\nroutes:\n  - name: r\n    when: 'true'\n    queue: ops\n    sla_minutes: 5\n"
	if err := os.WriteFile(rules, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	cl = run("--mail-from", "", "--rules", rules).Classification
	if cl.LeadScore != 7 || cl.Queue != "ops" || cl.SLAMinutes != 5 || cl.RulesVersion != "t-1" {
		t.Fatalf("with rules: %+v", cl)
	}
	env, _, _ := testEnv("--rules", "/no/such/file", file)
	if err := runClassify(t.Context(), env); err == nil || !strings.Contains(err.Error(), "rules file") {
		t.Fatalf("missing rules file: %v", err)
	}
}
