package classify_test

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/mailpipe/mailpipe/pkg/classify"
	"github.com/mailpipe/mailpipe/pkg/spam/rspamd"
)

// With a real rspamd (scripts/rspamd-up.sh), the classifier sends the rebuilt message and the
// envelope, and rspamd's symbols land on the record next to the built-in flags.
func TestClassifyWithRealRspamd(t *testing.T) {
	u := os.Getenv("MAILPIPE_TEST_RSPAMD_URL")
	if u == "" {
		if testing.Short() {
			t.Skip("needs rspamd; run make test")
		}
		t.Fatal("$MAILPIPE_TEST_RSPAMD_URL is not set: start scripts/rspamd-up.sh and export the URL it prints")
	}
	r, err := rspamd.New(u)
	if err != nil {
		t.Fatal(err)
	}
	c := newClassifier(t, classify.WithRspamd(r))
	msg := withText(parsed("prize@example.com", "prize@example.com"), "YOU HAVE WON!!! CLAIM NOW", "CLICK HERE TO CLAIM YOUR $1,000,000 PRIZE NOW!!!")
	msg.Date, msg.MessageID = nil, ""
	msg.Envelope.ClientIP = "192.0.2.10"
	got, err := c.Classify(t.Context(), msg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("spam score %.2f, flags %v", got.SpamScore, got.SpamFlags)
	if slices.ContainsFunc(got.SpamFlags, func(f string) bool { return strings.HasPrefix(f, "RSPAMD_UNAVAILABLE") }) {
		t.Fatalf("rspamd was not reached: %v", got.SpamFlags)
	}
	if !slices.ContainsFunc(got.SpamFlags, func(f string) bool { return strings.HasPrefix(f, "rspamd:") }) {
		t.Fatalf("no rspamd symbol among %v", got.SpamFlags)
	}
	builtin, _ := newClassifier(t).Classify(t.Context(), msg)
	if got.SpamScore == builtin.SpamScore {
		t.Fatalf("rspamd added nothing to the built-in score %.2f", builtin.SpamScore)
	}
}
