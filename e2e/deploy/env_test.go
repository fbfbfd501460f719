package deploy

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// processEnv are variables every service reads besides those of docs/configuration.md.
var processEnv = []string{"MAILPIPE_LOG_LEVEL", "OTEL_EXPORTER_OTLP_ENDPOINT"}

// TestEnvDocumented: every environment variable a service reads (docs/configuration.md, which
// pkg/pipeline keeps in sync with the config structs) is documented in .env.example (as a
// NAME= line, commented or not) and in the chart's values.yaml.
func TestEnvDocumented(t *testing.T) {
	envExample := readFile(t, ".env.example")
	values := readFile(t, "charts/mailpipe/values.yaml")
	vars := append(allServiceEnv(t), processEnv...)
	if len(vars) < 100 {
		t.Fatalf("only %d variables parsed from docs/configuration.md", len(vars))
	}
	for _, v := range vars {
		if !regexp.MustCompile(`(?m)^(# )?` + v + `=`).MatchString(envExample) {
			t.Errorf(".env.example does not document %s", v)
		}
		if !strings.Contains(values, v) {
			t.Errorf("charts/mailpipe/values.yaml does not document %s", v)
		}
	}
}

// TestEnvNamesKnown: every MAILPIPE_* variable set for a service by compose, the chart's values
// or the production values file is one the services read, so a misspelt name fails.
func TestEnvNamesKnown(t *testing.T) {
	known := append(allServiceEnv(t), processEnv...)
	check := func(where, name string) {
		if strings.HasPrefix(name, "MAILPIPE_") && !slices.Contains(known, name) {
			t.Errorf("%s sets %s, which no service reads", where, name)
		}
	}
	p := loadCompose(t)
	for _, svc := range append(slices.Clone(pipelineServices), "console", "topics") {
		for name := range p.Services[svc].Environment {
			check("docker-compose.yml "+svc, name)
		}
	}
	for _, rel := range []string{"charts/mailpipe/values.yaml", prodValues} {
		var v struct {
			Config   map[string]any `json:"config"`
			Services map[string]struct {
				Env map[string]any `json:"env"`
			} `json:"services"`
		}
		if err := yaml.Unmarshal([]byte(readFile(t, rel)), &v); err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		for name := range v.Config {
			check(rel+" config", name)
		}
		for svc, s := range v.Services {
			for name := range s.Env {
				check(rel+" services."+svc+".env", name)
			}
		}
	}
}
