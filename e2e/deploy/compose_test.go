package deploy

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// loadCompose loads docker-compose.yml as `docker compose` would, with env as the process
// environment and every profile enabled, and without reading a local .env.
func loadCompose(t *testing.T, env ...string) *types.Project {
	t.Helper()
	root := repoRoot(t)
	opts, err := cli.NewProjectOptions([]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root),
		cli.WithEnv(env),
		cli.WithProfiles([]string{"core", "observability", "spam"}),
	)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("loading docker-compose.yml: %v", err)
	}
	return p
}

// TestComposeProject loads docker-compose.yml with compose-go and checks the services, their
// profiles, ports, environment, health checks and health-ordered start-up.
func TestComposeProject(t *testing.T) {
	p := loadCompose(t)
	want := append(slices.Clone(pipelineServices), "console", "topics",
		"kafka", "redis", "minio", "minio-init", "postgres", "rspamd",
		"otel-collector", "prometheus", "grafana")
	for _, name := range want {
		if _, ok := p.Services[name]; !ok {
			t.Errorf("service %s is missing", name)
		}
	}
	for name := range p.Services {
		if !slices.Contains(want, name) {
			t.Errorf("unexpected service %s (add it to the test)", name)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	profile := func(name string) string {
		if ps := p.Services[name].Profiles; len(ps) == 1 {
			return ps[0]
		}
		return strings.Join(p.Services[name].Profiles, ",")
	}
	for _, name := range append(slices.Clone(pipelineServices), "console", "topics", "kafka", "redis", "minio", "minio-init", "postgres") {
		if got := profile(name); got != "core" {
			t.Errorf("%s: profiles %q, want core", name, got)
		}
	}
	for _, name := range []string{"otel-collector", "prometheus", "grafana"} {
		if got := profile(name); got != "observability" {
			t.Errorf("%s: profiles %q, want observability", name, got)
		}
	}

	// Published ports: SMTP on 2525, HTTP intake, the console, Grafana.
	published := map[string]string{}
	for name, s := range p.Services {
		for _, port := range s.Ports {
			published[port.Published] = name + ":" + itoa(port.Target)
		}
	}
	for port, target := range map[string]string{"2525": "ingress:2525", "8080": "ingress:8080", "8089": "console:8089", "3000": "grafana:3000"} {
		if published[port] != target {
			t.Errorf("host port %s publishes %q, want %s", port, published[port], target)
		}
	}

	// Health checks on everything that is waited for, and on every mailpipe service.
	for _, name := range append(slices.Clone(pipelineServices), "console", "kafka", "redis", "minio", "postgres", "prometheus", "grafana") {
		hc := p.Services[name].HealthCheck
		if hc == nil || hc.Disable || len(hc.Test) == 0 {
			t.Errorf("%s: no health check", name)
		}
	}
	for _, name := range append(slices.Clone(pipelineServices), "console") {
		s := p.Services[name]
		if got := strings.Join(s.HealthCheck.Test, " "); got != "CMD /usr/local/bin/healthcheck" {
			t.Errorf("%s: health check %q, want the image's healthcheck binary", name, got)
		}
		if !s.ReadOnly {
			t.Errorf("%s: root filesystem is not read-only", name)
		}
		if !slices.ContainsFunc(s.Tmpfs, func(p string) bool { return strings.HasPrefix(p, "/tmp") }) {
			t.Errorf("%s: no tmpfs on /tmp (the parser spools there)", name)
		}
		if s.Build == nil || s.Build.Args["SERVICE"] == nil {
			t.Errorf("%s: not built from the Dockerfile with a SERVICE build arg", name)
		}
	}

	// Start-up order: Kafka healthy → topics applied → services.
	dep := func(svc, on, cond string) {
		t.Helper()
		d, ok := p.Services[svc].DependsOn[on]
		if !ok || d.Condition != cond {
			t.Errorf("%s depends on %s with %q, want %s", svc, on, d.Condition, cond)
		}
	}
	dep("topics", "kafka", types.ServiceConditionHealthy)
	dep("minio-init", "minio", types.ServiceConditionHealthy)
	dep("grafana", "prometheus", types.ServiceConditionHealthy)
	dep("console", "topics", types.ServiceConditionCompletedSuccessfully)
	for _, name := range pipelineServices {
		dep(name, "topics", types.ServiceConditionCompletedSuccessfully)
		dep(name, "redis", types.ServiceConditionHealthy)
		dep(name, "minio-init", types.ServiceConditionCompletedSuccessfully)
	}
	dep("crm-sink", "postgres", types.ServiceConditionHealthy)
	if got := strings.Join(p.Services["topics"].Command, " "); !strings.HasPrefix(got, "topics apply") {
		t.Errorf("topics job runs %q, want `mailpipe topics apply`", got)
	}

	// Environment: wired to the compose containers.
	env := func(svc, key string) string {
		if v := p.Services[svc].Environment[key]; v != nil {
			return *v
		}
		return ""
	}
	for _, name := range pipelineServices {
		for key, want := range map[string]string{
			"MAILPIPE_KAFKA_BROKERS": "kafka:9092",
			"MAILPIPE_REDIS_URL":     "redis://redis:6379/0",
			"MAILPIPE_ADMIN_ADDR":    ":9090",
			"OTEL_SERVICE_NAME":      name,
		} {
			if got := env(name, key); got != want {
				t.Errorf("%s: %s=%q, want %q", name, key, got, want)
			}
		}
		if got := env(name, "MAILPIPE_BLOB_URL"); !strings.Contains(got, "endpoint=http://minio:9000") {
			t.Errorf("%s: MAILPIPE_BLOB_URL=%q does not point at MinIO", name, got)
		}
		if env(name, "AWS_ACCESS_KEY_ID") == "" || env(name, "AWS_SECRET_ACCESS_KEY") == "" {
			t.Errorf("%s: no S3 credentials for MinIO", name)
		}
	}
	if got := env("ingress", "MAILPIPE_SMTP_ADDR"); got != ":2525" {
		t.Errorf("ingress: MAILPIPE_SMTP_ADDR=%q", got)
	}
	if got := env("crm-sink", "MAILPIPE_CRM_POSTGRES_DSN"); !strings.Contains(got, "@postgres:5432/") {
		t.Errorf("crm-sink: MAILPIPE_CRM_POSTGRES_DSN=%q does not point at the postgres service", got)
	}
	if got := env("console", "MAILPIPE_ADMIN_ADDR"); got != ":8089" {
		t.Errorf("console: MAILPIPE_ADMIN_ADDR=%q, want :8089 (its healthcheck probes the console's port)", got)
	}
	for _, key := range []string{"KAFKA_PROCESS_ROLES", "KAFKA_CONTROLLER_QUORUM_VOTERS"} {
		if env("kafka", key) == "" {
			t.Errorf("kafka: %s unset (KRaft mode)", key)
		}
	}
	if img := p.Services["kafka"].Image; !strings.HasPrefix(img, "apache/kafka:") {
		t.Errorf("kafka image %q, want the official apache/kafka", img)
	}
}

// TestComposeEnvOverrides: settings from the environment (as from .env) reach the services.
func TestComposeEnvOverrides(t *testing.T) {
	p := loadCompose(t, "MAILPIPE_KAFKA_BROKERS=broker-1:9092", "MAILPIPE_SMTP_PORT=25", "MAILPIPE_VERSION=1.2.3")
	if got := *p.Services["parser"].Environment["MAILPIPE_KAFKA_BROKERS"]; got != "broker-1:9092" {
		t.Errorf("parser: MAILPIPE_KAFKA_BROKERS=%q, want the override", got)
	}
	if got := p.Services["ingress"].Image; !strings.HasSuffix(got, "/ingress:1.2.3") {
		t.Errorf("ingress image %q, want tag 1.2.3", got)
	}
	found := false
	for _, port := range p.Services["ingress"].Ports {
		found = found || (port.Published == "25" && port.Target == 2525)
	}
	if !found {
		t.Errorf("ingress ports %+v: want 25:2525", p.Services["ingress"].Ports)
	}
}

// TestComposeConfigFiles: the files mounted into the observability containers exist, and the
// Prometheus scrape targets name the services' admin ports.
func TestComposeConfigFiles(t *testing.T) {
	p := loadCompose(t)
	for _, name := range []string{"otel-collector", "prometheus", "grafana"} {
		for _, v := range p.Services[name].Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			if _, err := filepathStat(v.Source); err != nil {
				t.Errorf("%s: mounted %s: %v", name, v.Source, err)
			}
		}
	}
	prom := readFile(t, "charts/compose/prometheus.yml")
	for _, name := range pipelineServices {
		if !strings.Contains(prom, `"`+name+`:9090"`) {
			t.Errorf("prometheus.yml does not scrape %s:9090", name)
		}
	}
}
