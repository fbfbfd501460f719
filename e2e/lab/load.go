package lab

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/smtp"
	"net/textproto"
	"strings"
	"sync"
	"time"
)

// LoadSpec describes one run of the load generator.
type LoadSpec struct {
	Run      string  // unique run tag, part of every Message-ID
	Messages int     // distinct messages
	Threads  int     // thread keys; replies reference the earlier messages of their thread
	Rate     float64 // target sends per second (retries not counted)
	Workers  int     // concurrent SMTP clients
	// DupRatio of the messages are sent a second time, byte for byte, after their first 250.
	DupRatio float64
	// RefuseRatio of the messages carry RefuseMarker in the subject (the CRM refuses them while
	// refusing is on).
	RefuseRatio float64
	// Mix of sizes: LargeRatio of ~1-2 MiB with an attachment, MediumRatio of ~50 KB, the rest ~2-5 KB.
	LargeRatio, MediumRatio float64
	Seed                    uint64
	// GiveUp bounds how long one message is retried (like an MTA's queue lifetime).
	GiveUp time.Duration
	Domain string // recipient domain ingress accepts
}

// Entry is one message of the ledger and what the pipeline answered.
type Entry struct {
	MessageID string // without angle brackets
	Sender    string
	Thread    int
	Seq       int // place in the thread, 0 is the root
	Size      int
	Refuse    bool // carries RefuseMarker
	Dup       bool // sent twice on purpose

	Attempts  int       // SMTP transactions started (all sends, duplicates included)
	Codes     []int     // every reply to the end of DATA (0: connection failed or cut)
	Acked     int       // 250 answers
	AckedAt   time.Time // first 250
	Permanent int       // 5xx answer: the sender would bounce, the message is not the pipeline's
	GaveUp    bool
}

// Ledger holds every message the generator sent.
type Ledger struct {
	mu      sync.Mutex
	Entries []*Entry
	byID    map[string]*Entry
	Started time.Time
	Ended   time.Time
	spec    LoadSpec
}

// ByMessageID returns the entry of a (normalized, lower-case) Message-ID.
func (l *Ledger) ByMessageID(id string) *Entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.byID[strings.ToLower(strings.Trim(id, "<>"))]
}

// Counts returns messages acknowledged, retried sends (attempts beyond the first per send),
// 4xx/failed transactions, and permanent rejections.
func (l *Ledger) Counts() (acked, attempts, transient, permanent int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.Entries {
		if e.Acked > 0 {
			acked++
		}
		attempts += e.Attempts
		for _, c := range e.Codes {
			if c != 250 && c < 500 {
				transient++
			}
		}
		permanent += e.Permanent
	}
	return
}

// Plan draws the messages of spec (thread, place in thread, size, duplicate and refuse flags)
// into a ledger; Send sends them.
func Plan(spec LoadSpec) *Ledger {
	rng := rand.New(rand.NewPCG(spec.Seed, spec.Seed^0x9e3779b97f4a7c15)) //nolint:gosec // test data
	l := &Ledger{byID: map[string]*Entry{}, spec: spec}
	seqs := make([]int, spec.Threads)
	for i := range spec.Messages {
		th := rng.IntN(spec.Threads)
		e := &Entry{
			Thread: th, Seq: seqs[th],
			MessageID: fmt.Sprintf("lab-%s-t%d-s%d@lab.example", spec.Run, th, seqs[th]),
			Sender:    fmt.Sprintf("user%d@customer%d.example", th, th%97),
			Refuse:    rng.Float64() < spec.RefuseRatio,
			Dup:       rng.Float64() < spec.DupRatio,
		}
		switch r := rng.Float64(); {
		case r < spec.LargeRatio:
			e.Size = 1<<20 + rng.IntN(1<<20)
		case r < spec.LargeRatio+spec.MediumRatio:
			e.Size = 45_000 + rng.IntN(10_000)
		default:
			e.Size = 2_000 + rng.IntN(3_000)
		}
		_ = i
		seqs[th]++
		l.Entries = append(l.Entries, e)
		l.byID[strings.ToLower(e.MessageID)] = e
	}
	return l
}

// Send sends the ledger's messages over SMTP to addr. Messages of one thread go out one after
// the other, each after the previous one was answered 250 (so the thread's order in the pipeline
// is the ledger's order); a 4xx answer or a broken connection is retried with backoff until
// GiveUp, like an MTA. The exact duplicates go last.
func (l *Ledger) Send(ctx context.Context, addr string) {
	spec := l.spec
	// One queue per worker; a thread always goes to the same worker, in ledger order.
	workers := max(1, spec.Workers)
	queues := make([][]*Entry, workers)
	for _, e := range l.Entries {
		w := e.Thread % workers
		queues[w] = append(queues[w], e)
	}
	interval := time.Duration(float64(time.Second) / max(spec.Rate, 1))
	tokens := make(chan struct{})
	tctx, stopTokens := context.WithCancel(ctx)
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-tctx.Done():
				return
			case <-t.C:
				select {
				case tokens <- struct{}{}:
				case <-tctx.Done():
					return
				}
			}
		}
	}()
	l.mu.Lock()
	l.Started = time.Now()
	l.mu.Unlock()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			var dups []*Entry
			for _, e := range queues[w] {
				select {
				case <-tokens:
				case <-ctx.Done():
					return
				}
				msg := buildMessage(spec, e, l)
				send(ctx, addr, spec, l, e, msg)
				if e.Dup {
					dups = append(dups, e)
				}
			}
			// The exact duplicates go last, byte for byte, as a sender's resend would.
			for _, e := range dups {
				select {
				case <-tokens:
				case <-ctx.Done():
					return
				}
				send(ctx, addr, spec, l, e, buildMessage(spec, e, l))
			}
		})
	}
	wg.Wait()
	stopTokens()
	l.mu.Lock()
	l.Ended = time.Now()
	l.mu.Unlock()
}

// Acked is how many distinct messages got a 250 so far.
func (l *Ledger) Acked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.Entries {
		if e.Acked > 0 {
			n++
		}
	}
	return n
}

// buildMessage renders e deterministically (the same bytes every time it is called).
func buildMessage(spec LoadSpec, e *Entry, l *Ledger) []byte {
	var b bytes.Buffer
	root := fmt.Sprintf("lab-%s-t%d-s0@lab.example", spec.Run, e.Thread)
	subject := fmt.Sprintf("Order question %d", e.Thread)
	if e.Seq > 0 {
		subject = "Re: " + subject
	}
	if e.Refuse {
		subject += " " + RefuseMarker
	}
	date := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(e.Thread*1000+e.Seq) * time.Second)
	fmt.Fprintf(&b, "From: Customer %d <%s>\r\n", e.Thread, e.Sender)
	fmt.Fprintf(&b, "To: support@%s\r\n", spec.Domain)
	fmt.Fprintf(&b, "Subject: %s\r\n", subject)
	fmt.Fprintf(&b, "Date: %s\r\n", date.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s>\r\n", e.MessageID)
	if e.Seq > 0 {
		prev := fmt.Sprintf("lab-%s-t%d-s%d@lab.example", spec.Run, e.Thread, e.Seq-1)
		fmt.Fprintf(&b, "In-Reply-To: <%s>\r\n", prev)
		refs := []string{"<" + root + ">"}
		if e.Seq > 1 {
			refs = append(refs, "<"+prev+">")
		}
		fmt.Fprintf(&b, "References: %s\r\n", strings.Join(refs, " "))
	}
	b.WriteString("MIME-Version: 1.0\r\n")
	text := bodyText(e)
	if e.Size < 500_000 {
		b.WriteString("Content-Type: text/plain; charset=utf-8\r\n\r\n")
		writeFill(&b, text, e.Size-b.Len())
		return b.Bytes()
	}
	boundary := "lab-boundary-" + e.MessageID
	fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=%q\r\n\r\n", boundary)
	fmt.Fprintf(&b, "--%s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n", boundary, text)
	fmt.Fprintf(&b, "--%s\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"invoice-%d-%d.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n",
		boundary, e.Thread, e.Seq)
	// Deterministic pseudo-random attachment bytes (incompressible, like a real PDF or image).
	raw := make([]byte, e.Size*3/4)
	h := sha256.Sum256([]byte(e.MessageID))
	for i := 0; i < len(raw); i += len(h) {
		h = sha256.Sum256(h[:])
		copy(raw[i:], h[:])
	}
	enc := base64.StdEncoding.EncodeToString(raw)
	for len(enc) > 76 {
		b.WriteString(enc[:76])
		b.WriteString("\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc)
	fmt.Fprintf(&b, "\r\n--%s--\r\n", boundary)
	_ = l
	return b.Bytes()
}

func bodyText(e *Entry) string {
	if e.Seq == 0 {
		return fmt.Sprintf("Hello,\r\n\r\nI have a question about order %d.\r\n", e.Thread)
	}
	return fmt.Sprintf("Following up (%d) on my order %d.\r\n", e.Seq, e.Thread)
}

// writeFill writes text and then plain lines until about n bytes are written.
func writeFill(b *bytes.Buffer, text string, n int) {
	b.WriteString(text)
	line := "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\r\n"
	for written := len(text); written < n; written += len(line) {
		b.WriteString(line)
	}
}

// send delivers one copy of e, retrying transient failures like an MTA.
func send(ctx context.Context, addr string, spec LoadSpec, l *Ledger, e *Entry, msg []byte) {
	giveUp := time.Now().Add(spec.GiveUp)
	backoff := 200 * time.Millisecond
	for {
		code, err := smtpSend(ctx, addr, e.Sender, "support@"+spec.Domain, msg)
		l.mu.Lock()
		e.Attempts++
		e.Codes = append(e.Codes, code)
		switch {
		case code == 250:
			if e.Acked == 0 {
				e.AckedAt = time.Now()
			}
			e.Acked++
		case code >= 500:
			e.Permanent++
		}
		l.mu.Unlock()
		if code == 250 || code >= 500 {
			return
		}
		_ = err
		if time.Now().After(giveUp) || ctx.Err() != nil {
			l.mu.Lock()
			e.GaveUp = true
			l.mu.Unlock()
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff + rand.N(backoff/2)): //nolint:gosec // jitter
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// smtpSend runs one SMTP transaction and returns the reply code to the end of DATA (or to the
// command that failed); 0 when the connection failed or was cut.
func smtpSend(ctx context.Context, addr, from, to string, msg []byte) (int, error) {
	conn, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, err
	}
	_ = conn.SetDeadline(time.Now().Add(90 * time.Second))
	c, err := smtp.NewClient(conn, "127.0.0.1")
	if err != nil {
		_ = conn.Close()
		return codeOf(err), err
	}
	defer func() { _ = c.Close() }()
	if err := c.Hello("lab-client.example"); err != nil {
		return codeOf(err), err
	}
	if err := c.Mail(from); err != nil {
		return codeOf(err), err
	}
	if err := c.Rcpt(to); err != nil {
		return codeOf(err), err
	}
	w, err := c.Data()
	if err != nil {
		return codeOf(err), err
	}
	if _, err := w.Write(msg); err != nil {
		return 0, err
	}
	if err := w.Close(); err != nil {
		return codeOf(err), err
	}
	_ = c.Quit()
	return 250, nil
}

func codeOf(err error) int {
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}
