package pipeline

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The size mix: mostly small text mail, some with a 50 KB attachment, a few of 1 MiB (which
// ingress puts in the blob store as a claim check, above its 512 KiB inline limit).
const (
	shareMedium = 0.05 // 50 KB with an attachment
	shareLarge  = 0.005
	sizeMedium  = 50 << 10
	sizeLarge   = 1 << 20
)

// sizeFor draws one message size from the mix: 2–10 KB, 50 KB or 1 MiB.
func sizeFor(r *rand.Rand) int {
	switch x := r.Float64(); {
	case x < shareLarge:
		return sizeLarge
	case x < shareLarge+shareMedium:
		return sizeMedium
	default:
		return 2<<10 + r.IntN(8<<10)
	}
}

// fillers are prebuilt body text and base64 lines, cut to the size each message needs. No
// line starts with '.', so the DATA needs no dot-stuffing.
type fillers struct{ text, b64 []byte }

func newFillers() fillers {
	r := rand.New(rand.NewPCG(1, 2)) //nolint:gosec // load shape, not security
	words := strings.Fields("hello we would like a quote for twenty seats of your product please " +
		"send pricing and availability our team is evaluating vendors this quarter thanks regards " +
		"invoice order support ticket issue login password reset account billing renewal contract")
	var text bytes.Buffer
	for text.Len() < 12<<10 {
		line := 0
		for line < 66 {
			w := words[r.IntN(len(words))]
			text.WriteString(w)
			text.WriteByte(' ')
			line += len(w) + 1
		}
		text.WriteString("\r\n")
	}
	raw := make([]byte, sizeLarge)
	for i := range raw {
		raw[i] = byte(r.Uint32())
	}
	enc := base64.StdEncoding.EncodeToString(raw)
	var b64 bytes.Buffer
	for len(enc) > 0 {
		n := min(76, len(enc))
		b64.WriteString(enc[:n])
		b64.WriteString("\r\n")
		enc = enc[n:]
	}
	return fillers{text: text.Bytes(), b64: b64.Bytes()}
}

// cut returns the first n bytes of b, ending at a line end.
func cut(b []byte, n int) []byte {
	n = min(n, len(b))
	if i := bytes.LastIndex(b[:n], []byte("\r\n")); i > 0 {
		return b[:i+2]
	}
	return b[:n]
}

// message builds one mail of about size bytes with a unique Message-ID, ending in CRLF.
func (f fillers) message(seq int64, run string, r *rand.Rand, size int) []byte {
	var b bytes.Buffer
	b.Grow(size + 1024)
	from := fmt.Sprintf("user%d@company%d.example", r.IntN(5000), r.IntN(300))
	if r.IntN(4) == 0 {
		from = fmt.Sprintf("someone%d@gmail.com", r.IntN(5000))
	}
	subjects := []string{"Pricing for 20 seats", "Login problem", "Invoice question", "Partnership", "Demo request"}
	fmt.Fprintf(&b, "From: Sender %d <%s>\r\nTo: Support <%s>\r\nSubject: %s #%d\r\n", seq, from, recipient, subjects[r.IntN(len(subjects))], seq)
	fmt.Fprintf(&b, "Date: %s\r\nMessage-ID: <%d.%s@bench.example>\r\nMIME-Version: 1.0\r\n", time.Now().Format(time.RFC1123Z), seq, run)
	if size < sizeMedium {
		b.WriteString("Content-Type: text/plain; charset=utf-8\r\n\r\n")
		b.Write(cut(f.text, size-b.Len()))
		return b.Bytes()
	}
	b.WriteString("Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	b.Write(cut(f.text, 2<<10))
	b.WriteString("--b1\r\nContent-Type: application/pdf; name=\"quote.pdf\"\r\nContent-Disposition: attachment; filename=\"quote.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	b.Write(cut(f.b64, size-b.Len()-16))
	b.WriteString("--b1--\r\n")
	return b.Bytes()
}

// accepted is one message ingress answered 250 to.
type accepted struct {
	id    string
	at    time.Time
	bytes int
}

// loadResult is what one load step achieved.
type loadResult struct {
	accepted, refused, errors, dropped int
	bytes                              int64
	elapsed                            time.Duration
	firstErr                           string
}

// generator sends mail over several SMTP connections at a target rate.
type generator struct {
	addr, run string
	conns     int
	fill      fillers
	seq       atomic.Int64
	onAccept  func(step int, a accepted)
}

// send runs one step: rate messages per second for d. A scheduler issues tickets at the rate;
// each connection takes tickets and sends one message per ticket. A ticket that finds every
// connection busy (the queue full) is dropped and counted: the generator fell behind.
func (g *generator) send(ctx context.Context, step int, rate float64, d time.Duration) loadResult {
	tickets := make(chan struct{}, g.conns*2)
	var res loadResult
	var mu sync.Mutex
	begin := time.Now()
	go func() {
		defer close(tickets)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		issued := 0
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				el := now.Sub(begin)
				if el >= d {
					return
				}
				for due := int(el.Seconds() * rate); issued < due; issued++ {
					select {
					case tickets <- struct{}{}:
					default:
						mu.Lock()
						res.dropped++
						mu.Unlock()
					}
				}
			}
		}
	}()
	var wg sync.WaitGroup
	for i := range g.conns {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(step), uint64(i))) //nolint:gosec // load shape, not security
			var c *smtpConn
			defer func() {
				if c != nil {
					c.close()
				}
			}()
			for range tickets {
				if c == nil {
					var err error
					if c, err = dialSMTP(ctx, g.addr); err != nil {
						mu.Lock()
						res.errors++
						if res.firstErr == "" {
							res.firstErr = err.Error()
						}
						mu.Unlock()
						continue
					}
				}
				seq := g.seq.Add(1)
				msg := g.fill.message(seq, g.run, r, sizeFor(r))
				id, err := c.deliver(fmt.Sprintf("bounce-%d@bench.example", seq), recipient, msg)
				now := time.Now()
				mu.Lock()
				switch {
				case err == nil && id != "":
					res.accepted++
					res.bytes += int64(len(msg))
				case errors.Is(err, errRefused):
					res.refused++
				default:
					res.errors++
				}
				if err != nil && res.firstErr == "" {
					res.firstErr = err.Error()
				}
				mu.Unlock()
				if err == nil && id != "" {
					g.onAccept(step, accepted{id: id, at: now, bytes: len(msg)})
				}
				if err != nil { // a fresh connection rather than RSET: errors are rare
					c.close()
					c = nil
				}
			}
		})
	}
	wg.Wait()
	res.elapsed = d
	return res
}

// errRefused is a 4xx or 5xx answer to the message (the connection stays usable).
var errRefused = errors.New("refused")

// smtpConn is a minimal SMTP client that keeps the id in ingress's "250 … queued as ID".
type smtpConn struct {
	c net.Conn
	r *bufio.Reader
	w *bufio.Writer
}

func dialSMTP(ctx context.Context, addr string) (*smtpConn, error) {
	nc, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &smtpConn{c: nc, r: bufio.NewReaderSize(nc, 4096), w: bufio.NewWriterSize(nc, 64<<10)}
	if _, _, err := c.reply(); err != nil {
		c.close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	if code, text, err := c.cmd("EHLO bench.example"); err != nil || code != 250 {
		c.close()
		return nil, fmt.Errorf("EHLO: %d %s %w", code, text, err)
	}
	return c, nil
}

func (c *smtpConn) close() { _ = c.c.Close() }

// reply reads one (possibly multi-line) reply and returns its code and last line's text.
func (c *smtpConn) reply() (int, string, error) {
	_ = c.c.SetReadDeadline(time.Now().Add(60 * time.Second))
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return 0, "", err
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 3 {
			return 0, "", fmt.Errorf("short reply %q", line)
		}
		if len(line) == 3 || line[3] == ' ' {
			var code int
			if _, err := fmt.Sscanf(line[:3], "%d", &code); err != nil {
				return 0, "", fmt.Errorf("bad reply %q", line)
			}
			return code, strings.TrimSpace(line[min(4, len(line)):]), nil
		}
	}
}

func (c *smtpConn) cmd(line string) (int, string, error) {
	if _, err := c.w.WriteString(line + "\r\n"); err != nil {
		return 0, "", err
	}
	if err := c.w.Flush(); err != nil {
		return 0, "", err
	}
	return c.reply()
}

// deliver sends one message and returns the id ingress gave it.
func (c *smtpConn) deliver(from, to string, msg []byte) (string, error) {
	if code, text, err := c.cmd("MAIL FROM:<" + from + ">"); err != nil || code != 250 {
		return "", answer("MAIL", code, text, err)
	}
	if code, text, err := c.cmd("RCPT TO:<" + to + ">"); err != nil || code != 250 {
		return "", answer("RCPT", code, text, err)
	}
	if code, text, err := c.cmd("DATA"); err != nil || code != 354 {
		return "", answer("DATA", code, text, err)
	}
	_ = c.c.SetWriteDeadline(time.Now().Add(60 * time.Second))
	if _, err := c.w.Write(msg); err != nil {
		return "", err
	}
	if _, err := c.w.WriteString(".\r\n"); err != nil {
		return "", err
	}
	if err := c.w.Flush(); err != nil {
		return "", err
	}
	code, text, err := c.reply()
	if err != nil || code != 250 {
		return "", answer("end of DATA", code, text, err)
	}
	_, id, ok := strings.Cut(text, "queued as ")
	if !ok {
		return "", fmt.Errorf("end of DATA: 250 without an id: %q", text)
	}
	return strings.TrimSpace(id), nil
}

func answer(step string, code int, text string, err error) error {
	if err != nil {
		return fmt.Errorf("%s: %w", step, err)
	}
	if code >= 400 {
		return fmt.Errorf("%s: %d %s: %w", step, code, text, errRefused)
	}
	return fmt.Errorf("%s: unexpected %d %s", step, code, text)
}
