package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

var hex64 = regexp.MustCompile(`^[0-9a-f]{64}$`)

// checkLakeWithPython reads mail.lake.v1 with confluent-kafka + fastavro (an analyst's stack)
// and checks that every delivered message has a PII-minimised row keyed by its id.
func checkLakeWithPython(t *testing.T, brokers string, deliveredIDs map[string]string, minRows int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "python3", "interop/lake_consumer.py", brokers, "../schemas/mail.lake.v1.avsc",
		itoa(minRows), "90")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python lake consumer: %v\n%s", err, stderr.String())
	}
	rows := map[string]map[string]any{}
	s := bufio.NewScanner(bytes.NewReader(out))
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		var row map[string]any
		if err := json.Unmarshal(s.Bytes(), &row); err != nil {
			t.Fatalf("python output line %q: %v", s.Text(), err)
		}
		if row["_key"] != row["id"] {
			t.Errorf("lake row keyed %v, want its id %v", row["_key"], row["id"])
		}
		rows[row["id"].(string)] = row
	}
	for id, fromAddr := range deliveredIDs {
		row, ok := rows[id]
		if !ok {
			t.Errorf("no lake row for delivered message %s", id)
			continue
		}
		h, _ := row["from_hash"].(string)
		if fromAddr != "" && (!hex64.MatchString(h) || strings.Contains(string(mustJSON(row)), fromAddr)) {
			t.Errorf("lake row %s: from_hash %q is not a hash or the raw sender address leaks", id, h)
		}
		if row["tenant"] != "default" || row["outcome"] == "" {
			t.Errorf("lake row %s: tenant %v outcome %v", id, row["tenant"], row["outcome"])
		}
	}
	t.Logf("python confluent-kafka + fastavro decoded %d lake rows; %s", len(rows), strings.TrimSpace(stderr.String()))
}

// checkKeysWithKcat reads mail.parsed.v1's record keys with kcat (librdkafka's CLI) and checks
// that the given thread keys are there: any Kafka client sees the partitioning key.
func checkKeysWithKcat(t *testing.T, brokers string, wantKeys []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "kcat", "-b", brokers, "-C", "-t", "mail.parsed.v1", "-o", "beginning",
		"-e", "-q", "-X", "isolation.level=read_committed", "-f", "%k\n").Output()
	if err != nil {
		t.Fatalf("kcat: %v", err)
	}
	keys := map[string]bool{}
	for _, k := range strings.Split(string(out), "\n") {
		keys[strings.ToLower(k)] = true
	}
	for _, k := range wantKeys {
		if !keys[strings.ToLower(k)] {
			t.Errorf("kcat does not see thread key %q on mail.parsed.v1", k)
		}
	}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
