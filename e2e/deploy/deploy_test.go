// Package deploy validates the production shape of mailpipe without a cluster or a Docker
// engine: the Dockerfile's rules, docker-compose.yml loaded with compose-go, the Helm chart
// linted and rendered by a pinned Helm (built from the Go module proxy by `make test`) with every
// manifest decoded strictly into the Kubernetes API types, and the documentation of every
// environment variable the services read in .env.example and the chart's values.yaml.
package deploy

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// repoRoot is the repository root, two levels above this file's directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("no caller information")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func readFile(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// pipelineServices are the five pipeline binaries; consumers are the four that read a topic in
// a consumer group (every one but ingress), with their input topics.
var (
	pipelineServices = []string{"ingress", "parser", "classifier", "enricher", "crm-sink"}
	consumerInputs   = map[string]string{
		"parser":     "mail.raw.v1",
		"classifier": "mail.parsed.v1",
		"enricher":   "mail.classified.v1",
		"crm-sink":   "mail.enriched.v1",
	}
)

var configRow = regexp.MustCompile("^\\| `([A-Z0-9_]+)` \\|")

// serviceEnv parses docs/configuration.md (generated from the services' config structs and kept
// in sync by pkg/pipeline's ConfigurationDoc test) into the variables each service reads.
func serviceEnv(t *testing.T) map[string][]string {
	t.Helper()
	env := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(strings.NewReader(readFile(t, "docs/configuration.md")))
	for sc.Scan() {
		line := sc.Text()
		if s, ok := strings.CutPrefix(line, "## "); ok {
			section = strings.TrimSpace(s)
			continue
		}
		if m := configRow.FindStringSubmatch(line); m != nil && section != "" {
			env[section] = append(env[section], m[1])
		}
	}
	for _, s := range pipelineServices {
		if len(env[s]) == 0 {
			t.Fatalf("docs/configuration.md has no variables for service %s", s)
		}
	}
	return env
}

// allServiceEnv is the sorted union of serviceEnv.
func allServiceEnv(t *testing.T) []string {
	t.Helper()
	var all []string
	for _, vars := range serviceEnv(t) {
		all = append(all, vars...)
	}
	slices.Sort(all)
	return slices.Compact(all)
}
