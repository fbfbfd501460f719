package webhooksig_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/webhooksig"
)

// The test vector published with the Standard Webhooks reference libraries.
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = 1614265330
	vectorBody      = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func mustSecret(t *testing.T, s string) webhooksig.Secret {
	t.Helper()
	sec, err := webhooksig.ParseSecret(s)
	if err != nil {
		t.Fatal(err)
	}
	return sec
}

func TestSignSpecVector(t *testing.T) {
	got, err := webhooksig.Sign(vectorID, time.Unix(vectorTimestamp, 0), []byte(vectorBody), mustSecret(t, vectorSecret))
	if err != nil {
		t.Fatal(err)
	}
	if got != vectorSignature {
		t.Fatalf("Sign = %s, want %s", got, vectorSignature)
	}
	// The prefix is optional when parsing.
	bare := mustSecret(t, strings.TrimPrefix(vectorSecret, webhooksig.SecretPrefix))
	if bare.Encode() != vectorSecret {
		t.Errorf("Encode = %s, want %s", bare.Encode(), vectorSecret)
	}
}

func TestVerify(t *testing.T) {
	secret := mustSecret(t, vectorSecret)
	other, err := webhooksig.GenerateSecret()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(vectorTimestamp, 0)
	ts := strconv.Itoa(vectorTimestamp)
	wrongSig := "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
	for _, tt := range []struct {
		name       string
		id, ts     string
		signatures string
		body       string
		clock      time.Time
		accept     []webhooksig.Secret
		want       error
	}{
		{name: "valid", signatures: vectorSignature},
		{name: "valid among others", signatures: wrongSig + " v1a,abc= garbage " + vectorSignature + " " + wrongSig},
		{name: "rotation: old secret still accepted", signatures: vectorSignature, accept: []webhooksig.Secret{other, secret}},
		{name: "secret not accepted", signatures: vectorSignature, accept: []webhooksig.Secret{other}, want: webhooksig.ErrNoMatch},
		{name: "wrong signature", signatures: wrongSig, want: webhooksig.ErrNoMatch},
		{name: "other scheme only", signatures: strings.Replace(vectorSignature, "v1,", "v1a,", 1), want: webhooksig.ErrNoMatch},
		{name: "body changed", signatures: vectorSignature, body: `{"test": 2432232315}`, want: webhooksig.ErrNoMatch},
		{name: "id changed", id: "msg_other", signatures: vectorSignature, want: webhooksig.ErrNoMatch},
		{name: "timestamp changed within tolerance", ts: strconv.Itoa(vectorTimestamp + 1), signatures: vectorSignature, want: webhooksig.ErrNoMatch},
		{name: "bad base64", signatures: "v1,!!!", want: webhooksig.ErrNoMatch},
		{name: "missing id", id: "-", signatures: vectorSignature, want: webhooksig.ErrMissingHeader},
		{name: "missing timestamp", ts: "-", signatures: vectorSignature, want: webhooksig.ErrMissingHeader},
		{name: "missing signature", signatures: "  ", want: webhooksig.ErrMissingHeader},
		{name: "non-integer timestamp", ts: "1614265330.5", signatures: vectorSignature, want: webhooksig.ErrInvalidTimestamp},
		{name: "at the old edge", clock: now.Add(webhooksig.DefaultTolerance), signatures: vectorSignature},
		{name: "too old", clock: now.Add(webhooksig.DefaultTolerance + time.Second), signatures: vectorSignature, want: webhooksig.ErrTimestampTooOld},
		{name: "too new", clock: now.Add(-webhooksig.DefaultTolerance - time.Second), signatures: vectorSignature, want: webhooksig.ErrTimestampTooNew},
		{name: "absurd timestamp", ts: "9223372036854775807", signatures: vectorSignature, want: webhooksig.ErrTimestampTooNew},
	} {
		t.Run(tt.name, func(t *testing.T) {
			id, stamp, body, clock, accept := vectorID, ts, vectorBody, now, []webhooksig.Secret{secret}
			if tt.id == "-" {
				id = ""
			} else if tt.id != "" {
				id = tt.id
			}
			if tt.ts == "-" {
				stamp = ""
			} else if tt.ts != "" {
				stamp = tt.ts
			}
			if tt.body != "" {
				body = tt.body
			}
			if !tt.clock.IsZero() {
				clock = tt.clock
			}
			if tt.accept != nil {
				accept = tt.accept
			}
			v, err := webhooksig.NewVerifier(accept, webhooksig.WithClock(func() time.Time { return clock }))
			if err != nil {
				t.Fatal(err)
			}
			err = v.Verify(id, stamp, tt.signatures, []byte(body))
			if !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestRotationRoundTrip(t *testing.T) {
	// given a sender signing with the new and the old secret during a rotation
	oldSecret, _ := webhooksig.GenerateSecret()
	newSecret, _ := webhooksig.GenerateSecret()
	h := http.Header{}
	body := []byte(`{"external_id":"9f94b4b6"}`)
	if err := webhooksig.SetHeaders(h, "9f94b4b6", time.Now(), body, newSecret, oldSecret); err != nil {
		t.Fatal(err)
	}
	if n := len(strings.Fields(h.Get(webhooksig.HeaderSignature))); n != 2 {
		t.Fatalf("signature header has %d entries, want 2", n)
	}
	// then receivers on either secret accept it, and one on neither does not
	third, _ := webhooksig.GenerateSecret()
	for _, tt := range []struct {
		name   string
		accept webhooksig.Secret
		want   error
	}{
		{"old receiver", oldSecret, nil},
		{"new receiver", newSecret, nil},
		{"unrelated receiver", third, webhooksig.ErrNoMatch},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v, err := webhooksig.NewVerifier([]webhooksig.Secret{tt.accept})
			if err != nil {
				t.Fatal(err)
			}
			if err := v.VerifyHeader(h, body); !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
				t.Fatalf("VerifyHeader = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestSignRejects(t *testing.T) {
	s := mustSecret(t, vectorSecret)
	for _, tt := range []struct {
		name    string
		id      string
		secrets []webhooksig.Secret
	}{
		{"empty id", "", []webhooksig.Secret{s}},
		{"dot in id", "msg.1", []webhooksig.Secret{s}},
		{"space in id", "msg 1", []webhooksig.Secret{s}},
		{"no secret", "msg_1", nil},
		{"zero secret", "msg_1", []webhooksig.Secret{{}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if sig, err := webhooksig.Sign(tt.id, time.Now(), nil, tt.secrets...); err == nil {
				t.Fatalf("Sign = %q, want error", sig)
			}
		})
	}
}

func TestParseSecret(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   string
		ok   bool
	}{
		{"spec vector", vectorSecret, true},
		{"without prefix", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", true},
		{"surrounding space", " " + vectorSecret + "\n", true},
		{"not base64", "whsec_not*base64", false},
		{"too short", "whsec_" + "c2hvcnQ=", false},
		{"empty", "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := webhooksig.ParseSecret(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("ParseSecret(%q) error = %v, want ok = %v", tt.in, err, tt.ok)
			}
		})
	}
	secs, err := webhooksig.ParseSecrets([]string{vectorSecret, "bad", vectorSecret, ""})
	if len(secs) != 2 || err == nil || !strings.Contains(err.Error(), "secret 2") || !strings.Contains(err.Error(), "secret 4") {
		t.Errorf("ParseSecrets = %d secrets, %v", len(secs), err)
	}
}

func TestSecretIsRedacted(t *testing.T) {
	s := mustSecret(t, vectorSecret)
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "secret", s)
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %+v", s, []webhooksig.Secret{s}), buf.String()} {
		if strings.Contains(out, "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw") {
			t.Errorf("secret leaked: %s", out)
		}
	}
}

func TestNewVerifierValidates(t *testing.T) {
	if _, err := webhooksig.NewVerifier(nil); err == nil {
		t.Error("NewVerifier(nil) succeeded")
	}
	if _, err := webhooksig.NewVerifier([]webhooksig.Secret{{}}); err == nil {
		t.Error("NewVerifier with zero secret succeeded")
	}
	s := mustSecret(t, vectorSecret)
	if _, err := webhooksig.NewVerifier([]webhooksig.Secret{s}, webhooksig.WithTolerance(-time.Second)); err == nil {
		t.Error("negative tolerance accepted")
	}
	// Zero tolerance disables the window: the 2021 vector verifies today.
	v, err := webhooksig.NewVerifier([]webhooksig.Secret{s}, webhooksig.WithTolerance(0))
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Verify(vectorID, strconv.Itoa(vectorTimestamp), vectorSignature, []byte(vectorBody)); err != nil {
		t.Errorf("Verify without tolerance = %v", err)
	}
}

func FuzzVerify(f *testing.F) {
	f.Add(vectorID, strconv.Itoa(vectorTimestamp), vectorSignature, []byte(vectorBody))
	f.Add("", "-1", "v1, v1,", []byte{})
	f.Fuzz(func(t *testing.T, id, ts, sigs string, body []byte) {
		v, err := webhooksig.NewVerifier([]webhooksig.Secret{mustSecret(t, vectorSecret)}, webhooksig.WithTolerance(0))
		if err != nil {
			t.Fatal(err)
		}
		err = v.Verify(id, ts, sigs, body)
		signed := id == vectorID && ts == strconv.Itoa(vectorTimestamp) && string(body) == vectorBody
		if err == nil && !signed {
			// Only the signed triple may verify; anything else would be a forgery.
			t.Fatalf("forged input verified: %q %q %q %q", id, ts, sigs, body)
		}
	})
}
