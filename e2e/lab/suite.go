package lab

import (
	"context"
	"fmt"
	"syscall"
	"time"
)

// Size of a run: CI uses few messages, the chaos suite more.
type Size struct {
	Messages int
	Threads  int
	Rate     float64
	Workers  int
}

// CISize is the reduced set's load: a few hundred messages, fast enough for `make test`.
var CISize = Size{Messages: 200, Threads: 50, Rate: 60, Workers: 8}

// ChaosSize is the full suite's load.
var ChaosSize = Size{Messages: 2000, Threads: 400, Rate: 100, Workers: 16}

func load(sz Size, seed uint64) LoadSpec {
	return LoadSpec{
		Messages: sz.Messages, Threads: sz.Threads, Rate: sz.Rate, Workers: sz.Workers,
		DupRatio: 0.03, LargeRatio: 0.02, MediumRatio: 0.18, Seed: seed,
	}
}

// killAndRestart SIGKILLs service name once a fraction of the load was acknowledged, and
// starts it again after pause.
func killAndRestart(name string, times int, pause time.Duration) func(context.Context, *Run) error {
	return func(ctx context.Context, r *Run) error {
		total := len(r.Ledger.Entries)
		for i := range times {
			if err := r.WaitAcked(ctx, total*(i+1)/(times+2)); err != nil {
				return err
			}
			pid := r.Lab.Services[name].PID()
			if err := r.Lab.Services[name].Kill(); err != nil {
				return err
			}
			r.Logf("SIGKILL %s (pid %d) at %d acknowledged", name, pid, r.Ledger.Acked())
			time.Sleep(pause)
			if err := r.Lab.Restart(ctx, name); err != nil {
				return err
			}
		}
		return nil
	}
}

// Scenarios returns the suite's scenarios for a load size. The reduced CI set is every one of
// them run once at CISize; `make chaos` runs each 3 times at ChaosSize.
func Scenarios(sz Size) []Scenario {
	refused := 0.01
	return []Scenario{
		{
			Name: "baseline", Plan: "1. Baseline soak",
			Load: load(sz, 1),
		},
		{
			Name: "parser-kill9", Plan: "2. Parser SIGKILL",
			Load:  load(sz, 2),
			Fault: killAndRestart("parser", 1, 2*time.Second),
		},
		{
			Name: "crm-sink-kill9", Plan: "5. CRM-sink SIGKILL mid-batch",
			Load:  load(sz, 5),
			Fault: killAndRestart("crm-sink", 1, 2*time.Second),
		},
		{
			Name: "broker-restart", Plan: "7. Broker SIGKILL and restart",
			Load: load(sz, 7),
			Fault: func(ctx context.Context, r *Run) error {
				if err := r.WaitAcked(ctx, len(r.Ledger.Entries)/3); err != nil {
					return err
				}
				pid := r.Lab.Broker.PID()
				before := r.Ledger.Acked()
				if err := r.Lab.RestartBroker(ctx, 6*time.Second); err != nil {
					return err
				}
				r.Logf("broker SIGKILL (pid %d) at %d acknowledged, down 6s, restarted on the same port and data; %d acknowledged meanwhile",
					pid, before, r.Ledger.Acked()-before)
				return nil
			},
			DrainLimit: 3 * time.Minute,
		},
		{
			Name: "redis-restart", Plan: "18. Redis SIGKILL and restart (no persistence), 20% exact duplicates",
			Load: func() LoadSpec { l := load(sz, 18); l.DupRatio = 0.2; return l }(),
			Fault: func(ctx context.Context, r *Run) error {
				if err := r.WaitAcked(ctx, len(r.Ledger.Entries)/3); err != nil {
					return err
				}
				before := r.Ledger.Acked()
				if err := r.Lab.RestartRedis(ctx, 3*time.Second); err != nil {
					return err
				}
				r.Logf("redis SIGKILL at %d acknowledged, down 3s, restarted empty; %d acknowledged meanwhile", before, r.Ledger.Acked()-before)
				return nil
			},
		},
		{
			Name: "poison-replay", Plan: "15./16. Poison pills at 1% and DLQ replay",
			Load: func() LoadSpec { l := load(sz, 15); l.RefuseRatio = refused; return l }(),
			Env:  map[string][]string{"crm-sink": {"MAILPIPE_SINK_MAX_ATTEMPTS=2", "MAILPIPE_SINK_INITIAL_BACKOFF=10ms", "MAILPIPE_SINK_MAX_BACKOFF=50ms"}},
			// A third of the pills are undecodable, a third unparseable, a third refused by the CRM.
			PoisonSchema: max(1, sz.Messages/300), PoisonParse: max(1, sz.Messages/300),
			Fault: func(_ context.Context, r *Run) error {
				r.Lab.CRM.SetRefuse(true)
				return nil
			},
			After: func(ctx context.Context, r *Run) error {
				r.Lab.CRM.SetRefuse(false)
				out, err := r.Lab.CLIOutput(ctx, "dlq", "replay", "--name", "lab-fix", "--stage", "crm-sink", "--quiet")
				if err != nil {
					return err
				}
				r.Logf("CRM fixed; mailpipe dlq replay --stage crm-sink: %s", oneLine(out))
				return nil
			},
			WantDLQ: map[string]int{"schema": max(1, sz.Messages/300), "parse": max(1, sz.Messages/300), "crm_4xx": -1, "blocked": -1},
		},
		{
			Name: "crm-storm", Plan: "17. CRM 429/503 storm (Retry-After)",
			Load: load(sz, 17),
			Env:  map[string][]string{"crm-sink": {"MAILPIPE_SINK_MAX_ATTEMPTS=15", "MAILPIPE_SINK_MAX_BACKOFF=2s"}},
			Fault: func(ctx context.Context, r *Run) error {
				if err := r.WaitAcked(ctx, len(r.Ledger.Entries)/4); err != nil {
					return err
				}
				r.Lab.CRM.Storm(8 * time.Second)
				r.Logf("CRM storm for 8s (503 and 429, Retry-After: 1) from %d acknowledged", r.Ledger.Acked())
				return nil
			},
		},
		{
			Name: "classifier-enricher-kill9", Plan: "3. Classifier and enricher SIGKILL, interleaved",
			Load: load(sz, 3),
			Fault: func(ctx context.Context, r *Run) error {
				for i, name := range []string{"classifier", "enricher", "classifier", "enricher"} {
					if err := r.WaitAcked(ctx, len(r.Ledger.Entries)*(i+1)/6); err != nil {
						return err
					}
					if err := r.Lab.Services[name].Kill(); err != nil {
						return err
					}
					r.Logf("SIGKILL %s at %d acknowledged", name, r.Ledger.Acked())
					time.Sleep(2 * time.Second)
					if err := r.Lab.Restart(ctx, name); err != nil {
						return err
					}
				}
				return nil
			},
			DrainLimit: 3 * time.Minute,
		},
		{
			Name: "bounce-sigterm", Plan: "4. Clean bounce (SIGTERM) of every stage",
			Load: load(sz, 4),
			Fault: func(ctx context.Context, r *Run) error {
				for i, name := range ServiceNames {
					if err := r.WaitAcked(ctx, len(r.Ledger.Entries)*(i+1)/7); err != nil {
						return err
					}
					d, err := r.Lab.Services[name].Stop(10 * time.Second)
					if err != nil {
						return fmt.Errorf("SIGTERM %s: %w", name, err)
					}
					r.Logf("SIGTERM %s: stopped in %s", name, d.Round(time.Millisecond))
					if err := r.Lab.Restart(ctx, name); err != nil {
						return err
					}
				}
				return nil
			},
		},
		{
			Name: "ingress-kill9", Plan: "6. SMTP ingress SIGKILL while clients send",
			Load:  load(sz, 6),
			Fault: killAndRestart("ingress", 2, time.Second),
		},
		{
			Name: "parser-sigstop", Plan: "SIGSTOP/SIGCONT of the parser (a 15 s stall)",
			Load: load(sz, 8),
			Fault: func(ctx context.Context, r *Run) error {
				if err := r.WaitAcked(ctx, len(r.Ledger.Entries)/3); err != nil {
					return err
				}
				if err := r.Lab.Services["parser"].Signal(syscall.SIGSTOP); err != nil {
					return err
				}
				r.Logf("SIGSTOP parser at %d acknowledged", r.Ledger.Acked())
				time.Sleep(15 * time.Second)
				return r.Lab.Services["parser"].Signal(syscall.SIGCONT)
			},
			DrainLimit: 3 * time.Minute,
		},
	}
}

// CINames are the scenarios of the reduced CI set (the list).
var CINames = []string{"baseline", "parser-kill9", "crm-sink-kill9", "broker-restart", "redis-restart", "poison-replay", "crm-storm"}

func oneLine(s string) string {
	out := []rune{}
	for _, r := range s {
		if r == '\n' || r == '\r' {
			r = ' '
		}
		out = append(out, r)
	}
	if len(out) > 300 {
		out = append(out[:300], '…')
	}
	return string(out)
}
