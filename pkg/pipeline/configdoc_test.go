package pipeline_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailpipe/mailpipe/pkg/envconf"
	"github.com/mailpipe/mailpipe/pkg/pipeline"
)

var update = flag.Bool("update", false, "rewrite docs/configuration.md")

// docs/configuration.md is generated from the config structs the services load, so it cannot
// fall behind them. Regenerate with: go test ./pipeline -run ConfigurationDoc -update
func TestConfigurationDocIsCurrent(t *testing.T) {
	var b strings.Builder
	b.WriteString("# Configuration\n\nEvery service reads `MAILPIPE_*` environment variables (an empty value counts as unset).\n")
	b.WriteString("Generated from the config structs by `go test ./pkg/pipeline -run ConfigurationDoc -update`; do not edit.\n")
	section := func(title string, vars []envconf.Var, err error) {
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "\n## %s\n\n| variable | default | meaning |\n|---|---|---|\n", title)
		for _, v := range vars {
			fmt.Fprintf(&b, "| `%s` | %s | %s |\n", v.Name, code(v.Default), strings.ReplaceAll(v.Usage, "|", "\\|"))
		}
	}
	v, err := envconf.Vars[pipeline.IngressConfig](pipeline.EnvPrefix)
	section("ingress", v, err)
	v, err = envconf.Vars[pipeline.ParserConfig](pipeline.EnvPrefix)
	section("parser", v, err)
	v, err = envconf.Vars[pipeline.ClassifierConfig](pipeline.EnvPrefix)
	section("classifier", v, err)
	v, err = envconf.Vars[pipeline.EnricherConfig](pipeline.EnvPrefix)
	section("enricher", v, err)
	v, err = envconf.Vars[pipeline.SinkConfig](pipeline.EnvPrefix)
	section("crm-sink", v, err)

	path := filepath.Join("..", "..", "docs", "configuration.md")
	if *update {
		if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != b.String() {
		t.Fatalf("docs/configuration.md is stale: run go test ./pipeline -run ConfigurationDoc -update")
	}
}

func code(s string) string {
	if s == "" {
		return ""
	}
	return "`" + s + "`"
}
