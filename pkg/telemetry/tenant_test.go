package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/propagation"

	"github.com/mailpipe/mailpipe/pkg/telemetry"
)

func TestTenantTravelsAsBaggageIntoLogs(t *testing.T) {
	// given a tenant put in the context at ingress and carried over a header map
	ctx := telemetry.WithTenant(context.Background(), "acme corp;x")
	carrier := propagation.MapCarrier{}
	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	prop.Inject(ctx, carrier)
	if !strings.Contains(carrier.Get("baggage"), telemetry.BaggageTenant) {
		t.Fatalf("baggage header %q lacks the tenant", carrier.Get("baggage"))
	}
	remote := prop.Extract(context.Background(), carrier)

	// when a stage logs with the extracted context, once without and once with its own tenant
	var buf bytes.Buffer
	log := slog.New(telemetry.LogHandler(slog.NewJSONHandler(&buf, nil)))
	log.InfoContext(remote, "one")
	log.InfoContext(remote, "two", "tenant", "given")
	log.InfoContext(context.Background(), "three")

	// then the first line names the tenant, the second keeps the caller's, the third has none
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, m)
	}
	if lines[0]["tenant"] != "acme corp;x" || lines[1]["tenant"] != "given" || lines[2]["tenant"] != nil {
		t.Errorf("tenants = %v, %v, %v", lines[0]["tenant"], lines[1]["tenant"], lines[2]["tenant"])
	}
	if telemetry.WithTenant(context.Background(), "") != context.Background() {
		t.Error("an empty tenant changed the context")
	}
}
