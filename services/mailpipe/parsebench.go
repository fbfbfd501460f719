package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"syscall"
	"time"

	"github.com/mailpipe/mailpipe/pkg/app"
	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/failure"
	"github.com/mailpipe/mailpipe/pkg/ingest"
	"github.com/mailpipe/mailpipe/pkg/parse"
)

// benchResult is what `mailpipe parse -bench` prints: the same fields as
// scripts/node/bench-peers.mjs, so e2e/bench/parsers reads both alike. MB is 10^6 bytes of raw
// message.
type benchResult struct {
	Parser       string         `json:"parser"`
	Version      string         `json:"version"`
	Files        int            `json:"files"`
	Bytes        int64          `json:"bytes"`
	Passes       int            `json:"passes"`
	Messages     int            `json:"messages"`
	Errors       int            `json:"errors"`
	Seconds      float64        `json:"seconds"`
	CPUSeconds   float64        `json:"cpu_seconds"`
	MessagesPerS float64        `json:"messages_per_s"`
	MBPerS       float64        `json:"mb_per_s"`
	GOMAXPROCS   int            `json:"gomaxprocs"`
	Statuses     map[string]int `json:"statuses"`
}

// benchParse measures the parser stage's transformation (parse.Parser.Parse: the MIME parse and
// the whole mail.parsed.v1 record, attachments hashed; no Kafka, no blob store, no Avro) over
// files held in memory. The mail.raw.v1 facts ingress would send are derived before the clock
// starts. The files are parsed in order, whole passes only, for at least warmup untimed and then
// for at least d; one JSON line reports the timed passes. Errors counts the messages of one pass
// the parser refused (no readable header block), which the pipeline sends to the DLQ.
func benchParse(ctx context.Context, env app.Env, p *parse.Parser, files []string, stdin io.Reader,
	envelope events.Envelope, ids *ingest.IDGenerator, warmup, d time.Duration,
) error {
	type message struct {
		in       *events.Raw
		key, raw []byte
	}
	msgs := make([]message, 0, len(files))
	var total int64
	for _, file := range files {
		raw, err := readInput(file, stdin)
		if err != nil {
			return err
		}
		id, err := ids.New()
		if err != nil {
			return err
		}
		in := rawRecord(ctx, id, envelope, raw)
		in.Raw = nil // the message travels beside the record, as from the blob store
		msgs = append(msgs, message{in: in, key: []byte(in.ThreadKey), raw: raw})
		total += int64(len(raw))
	}
	res := benchResult{
		Parser: "mailpipe", Version: runtime.Version(), Files: len(msgs), Bytes: total,
		GOMAXPROCS: runtime.GOMAXPROCS(0), Statuses: map[string]int{},
	}
	pass := func(record bool) error {
		for _, m := range msgs {
			out, err := p.Parse(ctx, m.in, m.key, m.raw)
			switch {
			case err != nil && failure.Classify(err) != failure.Parse:
				return fmt.Errorf("parsing message %s: %w", m.in.ID, err)
			case !record:
			case err != nil:
				res.Errors++
			default:
				res.Statuses[out.ParseStatus]++
			}
		}
		return nil
	}
	for start := time.Now(); ; {
		if err := pass(false); err != nil {
			return err
		}
		if time.Since(start) >= warmup {
			break
		}
	}
	// Statuses and errors are those of one pass: every pass parses the same bytes.
	if err := pass(true); err != nil {
		return err
	}
	cpu0 := cpuTime()
	start := time.Now()
	var elapsed time.Duration
	for elapsed < d {
		if err := pass(false); err != nil {
			return err
		}
		res.Passes++
		elapsed = time.Since(start)
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	res.Seconds = elapsed.Seconds()
	res.CPUSeconds = (cpuTime() - cpu0).Seconds()
	res.Messages = res.Passes * len(msgs)
	res.MessagesPerS = float64(res.Messages) / res.Seconds
	res.MBPerS = float64(int64(res.Passes)*total) / 1e6 / res.Seconds
	if err := json.NewEncoder(env.Stdout).Encode(res); err != nil {
		return fmt.Errorf("writing result: %w", err)
	}
	return nil
}

// cpuTime is the processor time (user and system) the process has used so far: on a machine
// others share, it shows how much of the wall time the benchmark really ran.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
