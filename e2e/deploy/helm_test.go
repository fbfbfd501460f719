package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

const (
	chartDir        = "charts/mailpipe"
	prodValues      = "charts/mailpipe/ci/production-values.yaml"
	releaseName     = "mp"
	releaseNS       = "mailpipe"
	helmVersionVar  = "HELM_VERSION"
	helmInstallHint = "run `make test` (or `make helm`), which builds the pinned Helm from the Go module proxy into ~/.cache/mailpipe/bin"
)

var makeVar = regexp.MustCompile(`(?m)^` + helmVersionVar + `\s*\?=\s*(\S+)\s*$`)

// helmBinary is the pinned Helm: $MAILPIPE_HELM, else the path the Makefile installs
// HELM_VERSION to. A missing Helm fails the test: CI must not skip chart validation.
func helmBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("MAILPIPE_HELM"); p != "" {
		return p
	}
	m := makeVar.FindStringSubmatch(readFile(t, "Makefile"))
	if m == nil {
		t.Fatalf("the Makefile sets no %s", helmVersionVar)
	}
	cache := os.Getenv("MAILPIPE_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			t.Fatal(err)
		}
		cache = filepath.Join(home, ".cache", "mailpipe")
	}
	p := filepath.Join(cache, "bin", "helm-"+m[1]+".d", "helm")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("helm %s not found at %s: %s", m[1], p, helmInstallHint)
	}
	return p
}

func runHelm(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), helmBinary(t), args...)
	cmd.Dir = repoRoot(t)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

func renderChart(t *testing.T, extra ...string) []object {
	t.Helper()
	out := runHelm(t, append([]string{"template", releaseName, chartDir, "--namespace", releaseNS}, extra...)...)
	objs, err := decodeManifests(out)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// object is one rendered manifest decoded into its typed form.
type object struct {
	Kind, Name string
	Obj        any
}

// ScaledObject is the part of KEDA's keda.sh/v1alpha1 ScaledObject the chart renders; decoding
// into it strictly catches a misspelt field as the typed Kubernetes objects do.
type ScaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ScaleTargetRef struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Name       string `json:"name"`
		} `json:"scaleTargetRef"`
		PollingInterval *int32 `json:"pollingInterval"`
		CooldownPeriod  *int32 `json:"cooldownPeriod"`
		MinReplicaCount *int32 `json:"minReplicaCount"`
		MaxReplicaCount *int32 `json:"maxReplicaCount"`
		Triggers        []struct {
			Type              string            `json:"type"`
			Metadata          map[string]string `json:"metadata"`
			AuthenticationRef *struct {
				Name string `json:"name"`
			} `json:"authenticationRef"`
		} `json:"triggers"`
	} `json:"spec"`
}

// ServiceMonitor is the part of the Prometheus Operator's monitoring.coreos.com/v1
// ServiceMonitor the chart renders.
type ServiceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector struct {
			MatchNames []string `json:"matchNames"`
		} `json:"namespaceSelector"`
		Endpoints []struct {
			Port          string `json:"port"`
			Path          string `json:"path"`
			Interval      string `json:"interval"`
			ScrapeTimeout string `json:"scrapeTimeout"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// newTyped returns an empty typed object for apiVersion and kind.
func newTyped(apiVersion, kind string) (any, error) {
	switch apiVersion + "/" + kind {
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "v1/Service":
		return &corev1.Service{}, nil
	case "v1/ServiceAccount":
		return &corev1.ServiceAccount{}, nil
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}, nil
	case "batch/v1/Job":
		return &batchv1.Job{}, nil
	case "autoscaling/v2/HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}, nil
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, nil
	case "networking.k8s.io/v1/NetworkPolicy":
		return &networkingv1.NetworkPolicy{}, nil
	case "keda.sh/v1alpha1/ScaledObject":
		return &ScaledObject{}, nil
	case "monitoring.coreos.com/v1/ServiceMonitor":
		return &ServiceMonitor{}, nil
	}
	return nil, fmt.Errorf("no type for %s %s (add it to newTyped)", apiVersion, kind)
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// decodeManifests splits helm template output and decodes each document strictly: YAML to
// JSON (sigs.k8s.io/yaml), then encoding/json with DisallowUnknownFields into the typed object.
func decodeManifests(out string) ([]object, error) {
	var objs []object
	for _, doc := range docSep.Split(out, -1) {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		js, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			return nil, fmt.Errorf("manifest is not YAML: %w\n%s", err, doc)
		}
		var tm metav1.TypeMeta
		if err := json.Unmarshal(js, &tm); err != nil {
			return nil, err
		}
		typed, err := newTyped(tm.APIVersion, tm.Kind)
		if err != nil {
			return nil, err
		}
		dec := json.NewDecoder(bytes.NewReader(js))
		dec.DisallowUnknownFields()
		if err := dec.Decode(typed); err != nil {
			return nil, fmt.Errorf("%s: %w\n%s", tm.Kind, err, doc)
		}
		name := ""
		if m, ok := typed.(metav1.Object); ok {
			name = m.GetName()
			// The dashboard ConfigMap may go to Grafana's namespace (grafanaDashboard.namespace).
			if m.GetNamespace() != releaseNS && !strings.HasSuffix(name, "-dashboard") {
				return nil, fmt.Errorf("%s %s: namespace %q, want the release's %q", tm.Kind, name, m.GetNamespace(), releaseNS)
			}
		}
		if name == "" {
			return nil, errors.New(tm.Kind + " without a name")
		}
		objs = append(objs, object{Kind: tm.Kind, Name: name, Obj: typed})
	}
	return objs, nil
}

func stripComments(doc string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

func find[T any](objs []object, kind, name string) (T, bool) {
	var zero T
	for _, o := range objs {
		if o.Kind == kind && o.Name == name {
			if v, ok := o.Obj.(T); ok {
				return v, true
			}
		}
	}
	return zero, false
}

func count(objs []object, kind string) int {
	n := 0
	for _, o := range objs {
		if o.Kind == kind {
			n++
		}
	}
	return n
}

func full(component string) string { return releaseName + "-mailpipe-" + component }

func TestHelmLint(t *testing.T) {
	runHelm(t, "lint", "--strict", chartDir)
	runHelm(t, "lint", "--strict", chartDir, "-f", prodValues)
}

// checkDeployments: every service's Deployment runs its image as non-root with a read-only
// root filesystem, probes /healthz and /readyz on the admin port, and carries checksum/config.
func checkDeployments(t *testing.T, objs []object) {
	t.Helper()
	for _, name := range append(slices.Clone(pipelineServices), "console") {
		d, ok := find[*appsv1.Deployment](objs, "Deployment", full(name))
		if !ok {
			t.Errorf("no Deployment %s", full(name))
			continue
		}
		pod := d.Spec.Template
		if pod.Annotations["checksum/config"] == "" {
			t.Errorf("%s: no checksum/config annotation", name)
		}
		if len(pod.Spec.Containers) != 1 {
			t.Fatalf("%s: %d containers", name, len(pod.Spec.Containers))
		}
		c := pod.Spec.Containers[0]
		sc := c.SecurityContext
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
			t.Errorf("%s: container must run as non-root with a read-only root filesystem", name)
		}
		if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == "/tmp" }) {
			t.Errorf("%s: no writable /tmp", name)
		}
		if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.Name == "admin" && p.ContainerPort == 9090 }) {
			t.Errorf("%s: no admin port 9090", name)
		}
		probe := func(kind string, p *corev1.Probe, path string) {
			if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != path || p.HTTPGet.Port.String() != "admin" {
				t.Errorf("%s: %s probe must GET %s on the admin port, got %+v", name, kind, path, p)
			}
		}
		probe("liveness", c.LivenessProbe, "/healthz")
		probe("readiness", c.ReadinessProbe, "/readyz")
		env := map[string]string{}
		for _, e := range c.Env {
			env[e.Name] = e.Value
		}
		if env["MAILPIPE_ADMIN_ADDR"] != ":9090" {
			t.Errorf("%s: MAILPIPE_ADMIN_ADDR=%q, want :9090", name, env["MAILPIPE_ADMIN_ADDR"])
		}
		if !slices.ContainsFunc(c.EnvFrom, func(e corev1.EnvFromSource) bool {
			return e.ConfigMapRef != nil && e.ConfigMapRef.Name == full("config")
		}) {
			t.Errorf("%s: does not load the shared ConfigMap", name)
		}
		binary := name
		if name == "console" {
			binary = "mailpipe"
		}
		if !strings.Contains(c.Image, "/"+binary+":") && !strings.Contains(c.Image, "/"+binary+"@") {
			t.Errorf("%s: image %s is not the %s binary's", name, c.Image, binary)
		}
	}
}

func TestChartDefault(t *testing.T) {
	objs := renderChart(t)
	checkDeployments(t, objs)
	for kind, want := range map[string]int{"Deployment": 6, "HorizontalPodAutoscaler": 5, "PodDisruptionBudget": 5, "Job": 1, "ConfigMap": 1, "ScaledObject": 0, "ServiceMonitor": 0, "NetworkPolicy": 0} {
		if got := count(objs, kind); got != want {
			t.Errorf("%d %s objects, want %d", got, kind, want)
		}
	}
	smtp, ok := find[*corev1.Service](objs, "Service", full("smtp"))
	if !ok {
		t.Fatal("no SMTP Service")
	}
	if smtp.Spec.Type != corev1.ServiceTypeLoadBalancer || len(smtp.Spec.Ports) != 1 ||
		smtp.Spec.Ports[0].Port != 25 || smtp.Spec.Ports[0].TargetPort.String() != "smtp" {
		t.Errorf("SMTP Service: %+v, want LoadBalancer 25 → smtp", smtp.Spec)
	}
	job, ok := find[*batchv1.Job](objs, "Job", full("topics"))
	if !ok {
		t.Fatal("no topics Job")
	}
	if args := job.Spec.Template.Spec.Containers[0].Args; len(args) < 2 || args[0] != "topics" || args[1] != "apply" {
		t.Errorf("topics Job runs %q", args)
	}
	if !strings.Contains(job.Annotations["helm.sh/hook"], "pre-install") {
		t.Errorf("topics Job is not a pre-install hook: %v", job.Annotations)
	}
	cm, _ := find[*corev1.ConfigMap](objs, "ConfigMap", full("config"))
	if cm == nil || cm.Data["MAILPIPE_KAFKA_BROKERS"] == "" || cm.Data["MAILPIPE_REDIS_URL"] == "" {
		t.Errorf("ConfigMap lacks the external Kafka and Redis: %+v", cm)
	}

	// The checksum follows the configuration, so a config change rolls the pods.
	before, _ := find[*appsv1.Deployment](objs, "Deployment", full("parser"))
	changed := renderChart(t, "--set", "config.MAILPIPE_STAGE_CONCURRENCY=2")
	after, _ := find[*appsv1.Deployment](changed, "Deployment", full("parser"))
	if before.Spec.Template.Annotations["checksum/config"] == after.Spec.Template.Annotations["checksum/config"] {
		t.Error("checksum/config did not change with the configuration")
	}
}

func TestChartProduction(t *testing.T) {
	objs := renderChart(t, "-f", prodValues)
	checkDeployments(t, objs)
	for name, topic := range consumerInputs {
		so, ok := find[*ScaledObject](objs, "ScaledObject", full(name))
		if !ok {
			t.Errorf("no ScaledObject for %s", name)
			continue
		}
		if so.Spec.ScaleTargetRef.Name != full(name) || len(so.Spec.Triggers) != 1 {
			t.Errorf("%s: ScaledObject %+v", name, so.Spec)
			continue
		}
		tr := so.Spec.Triggers[0]
		if tr.Type != "kafka" || tr.Metadata["topic"] != topic || tr.Metadata["consumerGroup"] != "mailpipe-"+name ||
			tr.Metadata["bootstrapServers"] == "" || tr.AuthenticationRef == nil || tr.Metadata["sasl"] != "scram_sha512" {
			t.Errorf("%s: trigger %+v, want kafka on %s, group mailpipe-%s, with authentication", name, tr, topic, name)
		}
		if _, ok := find[*autoscalingv2.HorizontalPodAutoscaler](objs, "HorizontalPodAutoscaler", full(name)); ok {
			t.Errorf("%s: both a KEDA ScaledObject and a CPU HPA", name)
		}
		if d, _ := find[*appsv1.Deployment](objs, "Deployment", full(name)); d != nil && d.Spec.Replicas != nil {
			t.Errorf("%s: replicas set although KEDA scales it", name)
		}
	}
	if _, ok := find[*autoscalingv2.HorizontalPodAutoscaler](objs, "HorizontalPodAutoscaler", full("ingress")); !ok {
		t.Error("ingress has no CPU HPA")
	}
	if count(objs, "ServiceMonitor") != 1 || count(objs, "NetworkPolicy") != 2 {
		t.Errorf("%d ServiceMonitors, %d NetworkPolicies; want 1 and 2", count(objs, "ServiceMonitor"), count(objs, "NetworkPolicy"))
	}
	secretRefs := func(name string) []string {
		d, _ := find[*appsv1.Deployment](objs, "Deployment", full(name))
		var refs []string
		for _, e := range d.Spec.Template.Spec.Containers[0].EnvFrom {
			if e.SecretRef != nil {
				refs = append(refs, e.SecretRef.Name)
			}
		}
		return refs
	}
	for name, want := range map[string][]string{
		"ingress":  {"mailpipe-kafka", "mailpipe-redis", "mailpipe-blob", "mailpipe-http"},
		"parser":   {"mailpipe-kafka", "mailpipe-redis", "mailpipe-blob"},
		"crm-sink": {"mailpipe-kafka", "mailpipe-redis", "mailpipe-blob", "mailpipe-crm", "mailpipe-webhook"},
		"console":  {"mailpipe-kafka"},
	} {
		if got := secretRefs(name); !slices.Equal(got, want) {
			t.Errorf("%s loads secrets %q, want %q", name, got, want)
		}
	}
	smtp, _ := find[*corev1.Service](objs, "Service", full("smtp"))
	if smtp == nil || smtp.Annotations["service.beta.kubernetes.io/aws-load-balancer-type"] != "external" ||
		smtp.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
		t.Errorf("SMTP Service lacks its annotations or externalTrafficPolicy Local: %+v", smtp)
	}
}

// TestDecodeStrict: the decoder refuses a misspelt field, so the chart tests above would too.
func TestDecodeStrict(t *testing.T) {
	bad := "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\n  namespace: " + releaseNS +
		"\nspec:\n  replica: 2\n"
	if _, err := decodeManifests(bad); err == nil || !strings.Contains(err.Error(), "replica") {
		t.Errorf("a misspelt field decoded: %v", err)
	}
	badSO := "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata:\n  name: x\n  namespace: " + releaseNS +
		"\nspec:\n  maxReplicas: 2\n"
	if _, err := decodeManifests(badSO); err == nil {
		t.Error("a misspelt ScaledObject field decoded")
	}
}
