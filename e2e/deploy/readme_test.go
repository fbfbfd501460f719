package deploy

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite charts/mailpipe/README.md")

const readmeHeader = `# mailpipe Helm chart

<!-- Generated from values.yaml by ` + "`make chart-readme`" + ` (e2e/deploy TestChartReadme -update); do not edit. -->

Deploys mailpipe's services — ingress (SMTP and HTTP intake), parser, classifier, enricher,
crm-sink — and the ops console, one Deployment each, against an external Kafka, Redis and (for
the Postgres CRM target) PostgreSQL. Topics are created by a pre-install/pre-upgrade hook Job
running ` + "`mailpipe topics apply`" + `. Requires Kubernetes 1.27 or later; KEDA for the optional
ScaledObjects and the Prometheus Operator for the optional ServiceMonitor.

    helm install mailpipe charts/mailpipe -n mailpipe --create-namespace \
      --set kafka.brokers=kafka-0.kafka:9092 --set redis.url=redis://redis:6379/0 \
      --set secrets.crm.existingSecret=mailpipe-crm

Credentials are never values: create Secrets whose keys are the environment variable names and
name them in ` + "`secrets.*.existingSecret`" + `. Every other setting is an environment variable in
` + "`config`" + ` (all services) or ` + "`services.<name>.env`" + ` (one service); values.yaml lists them all and
docs/configuration.md explains them. Sizing, partitions, secret rotation, upgrades and managed
Kafka: docs/deploy.md. A production-like example: ci/production-values.yaml.

## Values

| Key | Type | Default | Description |
|-----|------|---------|-------------|
`

var keyLine = regexp.MustCompile(`^(\s*)("?[A-Za-z0-9_.-]+"?):(\s|$)`)

// chartReadme renders the values table from the `# --` comments of values.yaml: each comment
// documents the key on the next line; its default is that key's value in the parsed file.
func chartReadme(values []byte) (string, error) {
	var parsed map[string]any
	if err := yaml.Unmarshal(values, &parsed); err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString(readmeHeader)
	type frame struct {
		indent int
		key    string
	}
	var stack []frame
	var doc []string
	for line := range strings.SplitSeq(string(values), "\n") {
		trimmed := strings.TrimSpace(line)
		if d, ok := strings.CutPrefix(trimmed, "# -- "); ok {
			doc = []string{d}
			continue
		}
		if strings.HasPrefix(trimmed, "#") || trimmed == "" {
			continue
		}
		m := keyLine.FindStringSubmatch(line)
		if m == nil {
			continue // a list item or a flow continuation
		}
		indent, key := len(m[1]), strings.Trim(m[2], `"`)
		for len(stack) > 0 && stack[len(stack)-1].indent >= indent {
			stack = stack[:len(stack)-1]
		}
		stack = append(stack, frame{indent, key})
		if doc == nil {
			continue
		}
		path := make([]string, len(stack))
		for i, f := range stack {
			path[i] = f.key
		}
		v, ok := lookup(parsed, path)
		if !ok {
			return "", fmt.Errorf("values.yaml: documented key %s not found", strings.Join(path, "."))
		}
		def, err := json.Marshal(v)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "| %s | %s | `%s` | %s |\n", strings.Join(path, "."), typeName(v), strings.ReplaceAll(string(def), "|", `\|`), strings.ReplaceAll(strings.Join(doc, " "), "|", `\|`))
		doc = nil
	}
	return b.String(), nil
}

func lookup(m map[string]any, path []string) (any, bool) {
	var cur any = m
	for _, k := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = mm[k]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func typeName(v any) string {
	switch v.(type) {
	case map[string]any:
		return "object"
	case []any:
		return "list"
	case string:
		return "string"
	case bool:
		return "bool"
	case float64:
		return "int"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", v)
}

// TestChartReadme keeps charts/mailpipe/README.md generated from values.yaml; -update rewrites it.
func TestChartReadme(t *testing.T) {
	got, err := chartReadme([]byte(readFile(t, "charts/mailpipe/values.yaml")))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(repoRoot(t), "charts/mailpipe/README.md")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil { //nolint:gosec // a README
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v: run make chart-readme", err)
	}
	if string(want) != got {
		t.Error("charts/mailpipe/README.md is stale: run make chart-readme")
	}
}

// TestValuesDocumented: every leaf of values.yaml outside the free-form maps has a `# --` comment.
func TestValuesDocumented(t *testing.T) {
	readme, err := chartReadme([]byte(readFile(t, "charts/mailpipe/values.yaml")))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(readme, "\n| "); n < 100 {
		t.Errorf("only %d documented values", n)
	}
	for _, key := range []string{"kafka.brokers", "redis.url", "secrets.crm.existingSecret", "services.parser.keda.enabled", "services.ingress.smtp.service.annotations", "serviceMonitor.enabled", "networkPolicy.enabled"} {
		if !strings.Contains(readme, "| "+key+" |") {
			t.Errorf("values key %s is not documented", key)
		}
	}
}
