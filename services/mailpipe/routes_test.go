package main

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailpipe/mailpipe/pkg/app"
	"github.com/mailpipe/mailpipe/pkg/kafka/kafkatest"
	"github.com/mailpipe/mailpipe/pkg/route"
	"github.com/mailpipe/mailpipe/pkg/route/kafkaroute"
)

// TestRoutesCLI drives `mailpipe routes` through a session on a kfake cluster. Every command
// reads the table from the topic afresh, as separate CLI invocations would; each step depends on
// the ones before.
func TestRoutesCLI(t *testing.T) {
	brokers := kafkatest.NewCluster(t)
	topic := kafkatest.TopicName(t, "mail.routes")
	kafkatest.CreateTopic(t, brokers, topic, 3)
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bad := file("bad.yaml", `- pattern: ok@in.example.com
  tenant: t
- pattern: crm@in.example.com
  tenant: t
  crm_targets: [webhook, hubsopt]
- pattern: typo@in.example.com
  tenant: t
  tennant: t
- pattern: Sales@in.example.com
  tenant: t
- pattern: negative@in.example.com
  max_size: -1
`)
	good := file("good.yaml", `- pattern: jobs@in.example.com
  tenant: hr
- id: sales
  pattern: sales@in.example.com
  tenant: acme
  crm_targets: [salesforce]
- pattern: "*@in.example.com"
  tenant: triage
`)

	for _, tt := range []struct {
		name    string
		args    []string
		errIs   error  // nil: success
		out     string // substrings of stdout, "|"-separated
		stderr  string // substrings of stderr, "|"-separated
		exclude string // must not be in stdout
	}{
		{name: "empty list", args: []string{"list"}, out: "ID  PATTERN"},
		{
			name: "add plus tenant", args: []string{"add", "--pattern", "Support+{tenant}@IN.example.com", "--crm", "hubspot,webhook"},
			out: "stored route r-|pattern: support+{tenant}@in.example.com|- hubspot|- webhook",
		},
		{
			name: "add exact", args: []string{"add", "--id", "sales", "--pattern", "sales@in.example.com", "--tenant", "acme", "--max-size", "1048576"},
			out: "stored route sales",
		},
		{name: "add existing id", args: []string{"add", "--id", "sales", "--pattern", "sales2@in.example.com", "--tenant", "acme"}, errIs: kafkaroute.ErrExists},
		{
			name: "add duplicate pattern", args: []string{"add", "--id", "other", "--pattern", "support+*@in.example.com", "--tenant", "t"},
			errIs: route.ErrInvalid, stderr: "pattern: \"support+*@in.example.com\" competes with route \"r-",
		},
		{name: "add without tenant", args: []string{"add", "--pattern", "x@in.example.com"}, errIs: route.ErrInvalid, stderr: "tenant: must not be empty"},
		{
			name: "add unknown target", args: []string{"add", "--pattern", "x@in.example.com", "--tenant", "t", "--crm", "hubsopt", "--max-size", "-1"},
			errIs: route.ErrInvalid, stderr: `crm_targets[0]: unknown CRM target "hubsopt"|max_size: -1 is negative`,
		},
		{name: "add without pattern", args: []string{"add", "--tenant", "t"}, errIs: app.ErrConfig},
		{name: "replace", args: []string{"add", "--replace", "--id", "sales", "--pattern", "sales@in.example.com", "--tenant", "globex"}, out: "tenant: globex"},
		{name: "list", args: []string{"list"}, out: "sales  |sales@in.example.com|globex|support+{tenant}@in.example.com|{tag}|hubspot,webhook"},
		{name: "list yaml", args: []string{"list", "-o", "yaml"}, out: "- id: sales\n  pattern: sales@in.example.com"},
		{name: "list json", args: []string{"list", "-o", "json"}, out: `"id": "sales"`},
		{name: "show", args: []string{"show", "sales"}, out: "id: sales|tenant: globex|updated_at:"},
		{name: "show unknown", args: []string{"show", "nope"}, errIs: kafkaroute.ErrNotFound},
		{
			name: "import with errors", args: []string{"import", bad}, errIs: route.ErrInvalid,
			stderr: bad + `:5: routes[1]: crm_targets[1]: unknown CRM target "hubsopt"|` +
				bad + ":8: routes[2]: tennant: unknown field|" +
				bad + `:9: routes[3]: pattern: "sales@in.example.com" is already the pattern of route "sales"|` +
				bad + ":11: routes[4]: tenant: must not be empty|" +
				bad + ":12: routes[4]: max_size: -1 is negative",
		},
		{name: "nothing written by a failed import", args: []string{"list"}, exclude: "ok@in.example.com"},
		{name: "import dry run", args: []string{"import", "--dry-run", good}, out: "create    r-|update    sales|3 of 3 routes to write (dry run"},
		{name: "import", args: []string{"import", good}, out: "create    r-|update    sales|wrote 3 of 3"},
		{name: "import again", args: []string{"import", good}, out: "unchanged r-|unchanged sales|0 of 3 routes to write"},
		{name: "imported", args: []string{"list"}, out: "jobs@in.example.com|*@in.example.com|salesforce"},
		{name: "rm", args: []string{"rm", "sales"}, out: "deleted route sales"},
		{name: "rm again", args: []string{"rm", "sales"}, errIs: kafkaroute.ErrNotFound},
		{name: "removed", args: []string{"list"}, exclude: "sales@"},
		{name: "unknown command", args: []string{"frob"}, errIs: app.ErrConfig},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			env := app.Env{
				Args:   tt.args,
				Stdout: &stdout,
				Stderr: &stderr,
				Logger: slog.New(slog.DiscardHandler),
				Getenv: func(k string) string {
					return map[string]string{"MAILPIPE_KAFKA_BROKERS": strings.Join(brokers, ","), "MAILPIPE_ROUTES_TOPIC": topic}[k]
				},
			}
			err := runRoutes(t.Context(), env)
			switch {
			case tt.errIs == nil && err != nil:
				t.Fatalf("routes %s: %v\nstderr:\n%s", strings.Join(tt.args, " "), err, stderr.String())
			case tt.errIs != nil && !errors.Is(err, tt.errIs):
				t.Fatalf("routes %s: error %v, want %v\nstderr:\n%s", strings.Join(tt.args, " "), err, tt.errIs, stderr.String())
			}
			for _, want := range split(tt.out) {
				if !strings.Contains(stdout.String(), want) {
					t.Errorf("stdout lacks %q:\n%s", want, stdout.String())
				}
			}
			for _, want := range split(tt.stderr) {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
				}
			}
			if tt.exclude != "" && strings.Contains(stdout.String(), tt.exclude) {
				t.Errorf("stdout has %q:\n%s", tt.exclude, stdout.String())
			}
		})
	}
}

func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, "|")
}
