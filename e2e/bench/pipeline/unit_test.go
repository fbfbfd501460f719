package pipeline

import (
	"bytes"
	"math/rand/v2"
	"net/mail"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/kafka"
	"github.com/mailpipe/mailpipe/pkg/serde"
)

// The benchmark's own pieces, checked without services so make test covers them.

func TestFirstIDReadsRawAndOutcome(t *testing.T) {
	codec, err := serde.New(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	raw, err := codec.Encode(kafka.TopicRaw, &events.Raw{ID: "01RAWID", ReceivedAt: time.Now().UTC(), Raw: new([]byte("hello"))})
	if err != nil {
		t.Fatal(err)
	}
	out, err := codec.Encode(kafka.TopicCRM, &events.CRMOutcome{ID: "01OUTCOME", Outcome: "created", ObjectIds: map[string]string{}})
	if err != nil {
		t.Fatal(err)
	}
	for want, v := range map[string][]byte{"01RAWID": raw, "01OUTCOME": out} {
		if got, err := firstID(v); err != nil || got != want {
			t.Errorf("firstID = %q, %v; want %q", got, err, want)
		}
	}
	if _, err := firstID([]byte("junk")); err == nil {
		t.Error("firstID accepted an unframed value")
	}
}

func TestMessagesParseAndFollowTheMix(t *testing.T) {
	f := newFillers()
	r := rand.New(rand.NewPCG(3, 4))
	for _, size := range []int{2 << 10, 9 << 10, sizeMedium, sizeLarge} {
		m := f.message(1, "run", r, size)
		if d := len(m) - size; d < -512 || d > 512 {
			t.Errorf("asked %d bytes, got %d", size, len(m))
		}
		if _, err := mail.ReadMessage(bytes.NewReader(m)); err != nil {
			t.Errorf("%d-byte message does not parse: %v", size, err)
		}
		if bytes.Contains(m, []byte("\r\n.")) || !bytes.HasSuffix(m, []byte("\r\n")) {
			t.Errorf("%d-byte message would need dot-stuffing or lacks a final CRLF", size)
		}
	}
	var large, medium int
	for range 100000 {
		switch sizeFor(r) {
		case sizeLarge:
			large++
		case sizeMedium:
			medium++
		}
	}
	if large < 350 || large > 650 || medium < 4500 || medium > 5500 {
		t.Errorf("of 100000 sizes %d are 1 MiB and %d 50 KB, want about 500 and 5000", large, medium)
	}
}

func TestSlopeAndJudge(t *testing.T) {
	t0 := time.Now()
	var growing, flat []lagSample
	for i := range 10 {
		growing = append(growing, lagSample{at: t0.Add(time.Duration(i) * time.Second), total: int64(100 * i)})
		flat = append(flat, lagSample{at: t0.Add(time.Duration(i) * time.Second), total: int64(50 + 40*(i%2))})
	}
	if s := slope(growing); s < 99 || s > 101 {
		t.Errorf("slope of +100/s = %.1f", s)
	}
	if s := slope(flat); s < -5 || s > 5 {
		t.Errorf("slope of a saw tooth = %.1f", s)
	}
	st := &step{load: loadResult{accepted: 990, elapsed: 10 * time.Second}, growth: 1, drained: true}
	if ok, why := judge(st, 100); !ok {
		t.Errorf("99 %% accepted, flat lag, drained: not held (%s)", why)
	}
	st.growth = 10
	if ok, _ := judge(st, 100); ok {
		t.Error("lag growing 10/s at 100 msg/s: held")
	}
	st.growth, st.load.accepted = 0, 900
	if ok, _ := judge(st, 100); ok {
		t.Error("90 % accepted: held")
	}
	lat := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	if quantile(lat, .5) != 5 || quantile(lat, .99) != 10 || quantile(nil, .5) != 0 {
		t.Error("quantile")
	}
}
