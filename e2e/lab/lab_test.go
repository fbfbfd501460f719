package lab_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mailpipe/mailpipe/e2e/lab"
)

// TestLab runs the reliability lab. By default it is the reduced CI set (every scenario of
// lab.CINames once, lab.CISize, services built with -race); with MAILPIPE_CHAOS=1 (make chaos)
// it is the full suite: every scenario 3 times at lab.ChaosSize, and it rewrites
// docs/reliability.md. MAILPIPE_LAB_ONLY=a,b runs only the named scenarios.
//
// The lab needs no services from make services-up: every scenario starts its own broker
// (scripts/kafka-up.sh on a free port), redis-server and CRM contract server.
func TestLab(t *testing.T) {
	if testing.Short() {
		t.Skip("the reliability lab starts its own broker; run make test or make chaos")
	}
	chaos := os.Getenv("MAILPIPE_CHAOS") == "1"
	repo, err := lab.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	size, runs, race := lab.CISize, 1, true
	names := lab.CINames
	if chaos {
		size, runs, race = lab.ChaosSize, 3, false
		names = nil
	}
	if only := os.Getenv("MAILPIPE_LAB_ONLY"); only != "" {
		names = strings.Split(only, ",")
	}
	ctx := t.Context()
	bins, err := lab.Build(ctx, repo, t.TempDir(), race)
	if err != nil {
		t.Fatal(err)
	}
	var results []*lab.Result
	for _, sc := range lab.Scenarios(size) {
		if names != nil && !slices.Contains(names, sc.Name) {
			continue
		}
		for attempt := 1; attempt <= runs; attempt++ {
			ok := t.Run(sc.Name, func(t *testing.T) {
				res, err := lab.Execute(ctx, t, bins, repo, sc, attempt)
				if err != nil {
					t.Fatalf("lab: %v", err)
				}
				results = append(results, res)
				t.Log(res.Summary())
				for _, f := range res.Failures {
					t.Error(f)
				}
			})
			_ = ok
		}
	}
	// make chaos rewrites docs/reliability.md; MAILPIPE_LAB_REPORT=path writes the same report
	// for any run (e.g. the reduced set).
	out := os.Getenv("MAILPIPE_LAB_REPORT")
	cmdline := "go test -race -run TestLab ./lab/ (the reduced CI set, one run each)"
	if chaos {
		cmdline = "make chaos"
		if out == "" && os.Getenv("MAILPIPE_LAB_ONLY") == "" {
			out = filepath.Join(repo, "docs", "reliability.md")
		}
	}
	if out != "" {
		md := lab.Markdown(results, lab.DetectVersions(repo), size, race, cmdline, notRun)
		if err := os.WriteFile(out, []byte(md), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", out)
	}
}

// notRun lists the plan's tests the lab does not run yet, with the reason.
var notRun = []string{
	"8. Broker SIGSTOP ×3 (20 s stalls): not built yet (the harness can send it: Broker.Signal).",
	"9., 10., 21. toxiproxy network faults (ambiguous produce timeouts, enricher partition, Redis latency): toxiproxy is not wired in yet.",
	"11., 12. transactional.id hijack and transaction timeout fault flag: need a helper producer and a fault hook in the classifier.",
	"13. Rebalance storm (classifier 1→3→1): needs per-instance transactional ids in the supervisor.",
	"14. Slow consumer: needs a slow-down fault flag in the enricher.",
	"19., 20. Redis eviction and crash between claim and completion: not built yet.",
	"22.-26. Ingress abuse (limits, smuggling corpus, slowloris, MIME bombs, HTTP verification): partly covered by unit and e2e tests elsewhere, not in the lab.",
	"27.-29. Egress, attachment scanning, encryption at rest: not in the lab (no scanner; encryption tests live with pkg/blob).",
	"Memory limits (ulimit -v): not applied.",
}
