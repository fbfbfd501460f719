package ingest_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/mail"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mailpipe/mailpipe/pkg/ingest"
	"github.com/mailpipe/mailpipe/pkg/thread"
)

// Thread association accuracy (issue 3): a generated set of conversations goes through ingest
// in arrival order and every reply's record key is compared with its conversation's root id.

// client is how a reply's mailer writes the threading headers.
type client int

const (
	clientFull      client = iota // In-Reply-To and References as RFC 5322 3.6.4 asks
	clientTrimmed                 // References cut to its last two ids (the root dropped)
	clientInReplyTo               // In-Reply-To only, no References
	clientNone                    // neither header
)

func (c client) String() string {
	return [...]string{"full References", "trimmed References", "In-Reply-To only", "no threading headers"}[c]
}

// convMessage is one generated message.
type convMessage struct {
	conv, pos int
	id        string // Message-ID without brackets
	root      string // the conversation's root id: the thread key every message should get
	parent    *convMessage
	client    client
	// seen: the message reaches ingest. An unseen one (sent from a mailbox outside mailpipe, or
	// lost) is still replied to.
	seen       bool
	inReplyTo  string   // as written by its mailer
	references []string // as written by its mailer
	raw        []byte
}

// linked reports whether the message names its parent at all.
func (m *convMessage) linked() bool { return m.inReplyTo != "" || len(m.references) > 0 }

// generateConversations builds n conversations deterministically from seed and returns their
// messages in arrival order (conversations interleaved, each in its own order).
func generateConversations(seed uint64, n int) []*convMessage {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	pick := func(weights ...int) int {
		sum := 0
		for _, w := range weights {
			sum += w
		}
		x := rng.IntN(sum)
		for i, w := range weights {
			if x < w {
				return i
			}
			x -= w
		}
		return len(weights) - 1
	}
	base := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	var convs [][]*convMessage
	for c := range n {
		size := 2 + rng.IntN(10) // a root and 1 to 10 replies
		msgs := make([]*convMessage, 0, size)
		for i := range size {
			m := &convMessage{conv: c, pos: i, id: fmt.Sprintf("c%03d.m%02d.%x@%s", c, i, rng.Uint32(), []string{"example.org", "in.example.com"}[i%2])}
			m.seen = rng.IntN(10) != 0 // one message in ten never reaches ingest
			if i == 0 {
				m.root = m.id
				msgs = append(msgs, m)
				continue
			}
			m.root = msgs[0].root
			// Most replies answer the latest message; some answer an earlier one (a branch).
			if rng.IntN(10) < 7 {
				m.parent = msgs[i-1]
			} else {
				m.parent = msgs[rng.IntN(i)]
			}
			m.client = client(pick(55, 15, 15, 15))
			// References as the mailer derives them from the parent it displays (RFC 5322
			// 3.6.4): the parent's References, else its single In-Reply-To, then the parent.
			full := append([]string(nil), m.parent.references...)
			if len(full) == 0 && m.parent.inReplyTo != "" {
				full = []string{m.parent.inReplyTo}
			}
			full = append(full, m.parent.id)
			switch m.client {
			case clientFull:
				m.inReplyTo, m.references = m.parent.id, full
			case clientTrimmed:
				m.inReplyTo, m.references = m.parent.id, full[max(0, len(full)-2):]
			case clientInReplyTo:
				m.inReplyTo = m.parent.id
			case clientNone:
			}
			msgs = append(msgs, m)
		}
		for _, m := range msgs {
			m.raw = m.render(base.Add(time.Duration(m.conv)*time.Hour + time.Duration(m.pos)*time.Minute))
		}
		convs = append(convs, msgs)
	}
	// Interleave: repeatedly take the next message of a random unfinished conversation.
	var out []*convMessage
	next := make([]int, len(convs))
	for left := len(convs); left > 0; {
		c := rng.IntN(len(convs))
		if next[c] == len(convs[c]) {
			continue
		}
		out = append(out, convs[c][next[c]])
		if next[c]++; next[c] == len(convs[c]) {
			left--
		}
	}
	return out
}

func (m *convMessage) render(at time.Time) []byte {
	var b strings.Builder
	from, to := "Ann Customer <ann@example.org>", "Support <support@in.example.com>"
	if m.pos%2 == 1 {
		from, to = to, from
	}
	subject := fmt.Sprintf("Order %d", m.conv)
	if m.pos > 0 {
		subject = "Re: " + subject
	}
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%s>\r\n", from, to, subject, at.Format(time.RFC1123Z), m.id)
	if m.inReplyTo != "" {
		fmt.Fprintf(&b, "In-Reply-To: <%s>\r\n", m.inReplyTo)
	}
	if len(m.references) > 0 {
		// Folded one id per line, as mailers write long lists.
		fmt.Fprintf(&b, "References: <%s>\r\n", strings.Join(m.references, ">\r\n <"))
	}
	fmt.Fprintf(&b, "\r\nMessage %d of conversation %d.\r\n", m.pos, m.conv)
	return []byte(b.String())
}

// accuracy counts replies whose thread key was their root's (hits) out of total.
type accuracy struct{ hits, total int }

func (a *accuracy) add(hit bool) {
	a.total++
	if hit {
		a.hits++
	}
}

func (a accuracy) String() string {
	if a.total == 0 {
		return "n/a (0 replies)"
	}
	return fmt.Sprintf("%.1f%% (%d/%d)", 100*float64(a.hits)/float64(a.total), a.hits, a.total)
}

// threadReport is the measurement.
type threadReport struct {
	// intact: parent seen, reply names it, and every ancestor up to the root was seen and named
	// its own parent. Thread keys there must be the root's: the target is 100%.
	intact accuracy
	// parentSeen: every reply whose parent was seen and that names it (In-Reply-To or
	// References), whatever happened further up.
	parentSeen accuracy
	// followsParent: of those, replies keyed like their parent (the ordering guarantee: a reply
	// lands on its parent's partition, right or wrong). Target 100%.
	followsParent accuracy
	// unlinked: parent seen, but the reply's mailer dropped both headers.
	unlinked accuracy
	// parentUnseen: the parent never reached ingest, by the reply's client.
	parentUnseen map[client]*accuracy
	// byClient: parent seen, by the reply's client.
	byClient map[client]*accuracy
	all      accuracy
}

func (r threadReport) log(t *testing.T, label string) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "thread association accuracy (%s):\n", label)
	fmt.Fprintf(&b, "  parent seen, reply names it, ancestry intact: %s  (target 100%%)\n", r.intact)
	fmt.Fprintf(&b, "  parent seen, reply names it (any ancestry):   %s\n", r.parentSeen)
	fmt.Fprintf(&b, "    of those keyed like their parent:           %s  (target 100%%)\n", r.followsParent)
	fmt.Fprintf(&b, "  parent seen, reply drops both headers:        %s\n", r.unlinked)
	for _, c := range []client{clientFull, clientTrimmed, clientInReplyTo, clientNone} {
		if a := r.byClient[c]; a != nil {
			fmt.Fprintf(&b, "    parent seen, %-22s         %s\n", c.String()+":", a)
		}
	}
	for _, c := range []client{clientFull, clientTrimmed, clientInReplyTo, clientNone} {
		if a := r.parentUnseen[c]; a != nil {
			fmt.Fprintf(&b, "  parent never seen, %-22s     %s\n", c.String()+":", a)
		}
	}
	fmt.Fprintf(&b, "  every reply ingested:                         %s", r.all)
	t.Log(b.String())
}

// measureThreads sends every seen message through in and scores the replies.
func measureThreads(t *testing.T, in *ingest.Ingester, msgs []*convMessage) threadReport {
	t.Helper()
	r := threadReport{parentUnseen: map[client]*accuracy{}, byClient: map[client]*accuracy{}}
	keys := map[string]string{} // message id → thread key it was recorded with
	for _, m := range msgs {
		if !m.seen {
			continue
		}
		res, err := in.Accept(t.Context(), smtpEnv("support@in.example.com"), m.raw)
		if err != nil {
			t.Fatalf("message %s: %v", m.id, err)
		}
		keys[m.id] = res.ThreadKey
		if m.parent == nil {
			continue
		}
		hit := res.ThreadKey == m.root
		r.all.add(hit)
		acc := func(mp map[client]*accuracy) *accuracy {
			if mp[m.client] == nil {
				mp[m.client] = &accuracy{}
			}
			return mp[m.client]
		}
		if !m.parent.seen {
			acc(r.parentUnseen).add(hit)
			continue
		}
		acc(r.byClient).add(hit)
		if !m.linked() {
			r.unlinked.add(hit)
			continue
		}
		r.parentSeen.add(hit)
		r.followsParent.add(res.ThreadKey == keys[m.parent.id])
		intact := true
		for a := m.parent; a.parent != nil; a = a.parent {
			intact = intact && a.seen && a.linked()
		}
		if intact && m.parent.seen && msgRoot(m).seen {
			r.intact.add(hit)
		}
	}
	return r
}

func msgRoot(m *convMessage) *convMessage {
	for m.parent != nil {
		m = m.parent
	}
	return m
}

// checkTargets asserts the two 100% targets and that the set exercises every case.
func checkTargets(t *testing.T, r threadReport) {
	t.Helper()
	if r.intact.total < 500 || r.intact.hits != r.intact.total {
		t.Errorf("parent seen with intact ancestry: %s, want 100%% of at least 500 replies", r.intact)
	}
	if r.followsParent.hits != r.followsParent.total {
		t.Errorf("replies keyed like their seen parent: %s, want 100%%", r.followsParent)
	}
	for _, c := range []client{clientFull, clientTrimmed, clientInReplyTo, clientNone} {
		if a := r.byClient[c]; a == nil || a.total < 50 {
			t.Errorf("only %v replies from %s clients with their parent seen; the set is too small", a, c)
		}
	}
	if r.unlinked.total == 0 || r.unlinked.hits != 0 {
		// Nothing in such a reply's headers names the conversation; a hit would mean the key
		// came from somewhere it must not (a stale index entry, a collision).
		t.Errorf("replies without threading headers: %s, want 0%% of a non-empty set", r.unlinked)
	}
}

// TestThreadAccuracy measures thread association with the in-memory index (runs under -short);
// TestIntegrationThreadAccuracyRedis repeats it on the real Redis index.
func TestThreadAccuracy(t *testing.T) {
	msgs := generateConversations(3, 400)

	// With the index.
	in := newIngester(t, ingest.Config{}, ingest.Options{Producer: &fakeProducer{}, ThreadIndex: newMemIndex(nil)})
	r := measureThreads(t, in, msgs)
	r.log(t, "in-memory thread index")
	checkTargets(t, r)

	// Headers only, for comparison: what the index adds.
	in = newIngester(t, ingest.Config{}, ingest.Options{Producer: &fakeProducer{}})
	base := measureThreads(t, in, msgs)
	base.log(t, "no thread index, headers only")
	if base.intact.hits >= r.intact.hits {
		t.Errorf("the index does not improve accuracy: %s with it, %s without", r.intact, base.intact)
	}
}

// TestThreadSources checks that the set reaches each derivation rule, so the figures cover them.
func TestThreadSources(t *testing.T) {
	idx := newMemIndex(nil)
	seen := map[thread.Source]int{}
	for _, m := range generateConversations(3, 400) {
		if !m.seen {
			continue
		}
		res, err := thread.Key(t.Context(), readHeadersOf(m.raw), idx)
		if err != nil {
			t.Fatal(err)
		}
		seen[res.Source]++
	}
	var names []string
	for s, n := range seen {
		names = append(names, fmt.Sprintf("%s=%d", s, n))
	}
	sort.Strings(names)
	t.Logf("derivation rules used: %s", strings.Join(names, " "))
	for _, s := range []thread.Source{thread.SourceReferences, thread.SourceIndex, thread.SourceInReplyTo, thread.SourceMessageID} {
		if seen[s] == 0 {
			t.Errorf("no message keyed by rule %s", s)
		}
	}
}

func readHeadersOf(raw []byte) thread.Headers {
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return thread.Headers{}
	}
	return thread.FromMail(m.Header, "")
}
