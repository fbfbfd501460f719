package smtpd_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-smtp"

	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/ingest"
	"github.com/mailpipe/mailpipe/pkg/ingest/smtpd"
)

// denySenders refuses the senders it lists.
type denySenders map[string]bool

func (d denySenders) AllowsSender(from string) bool { return !d[from] }

// policyAccepter routes small@p.example.com to a route with a 300-byte limit and
// closed@p.example.com to a route refusing mallory@example.org; open@p.example.com has neither.
type policyAccepter struct {
	deny *denySenders
	mu   sync.Mutex
	got  []string
}

func (a *policyAccepter) AcceptStream(_ context.Context, _ events.Envelope, r io.Reader) (ingest.Result, error) {
	raw, err := io.ReadAll(r)
	if err != nil {
		return ingest.Result{}, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.got = append(a.got, string(raw))
	return ingest.Result{ID: "id", ThreadKey: "k"}, nil
}

func (a *policyAccepter) Resolve(rcpt string) (ingest.Route, bool) {
	switch rcpt {
	case "small@p.example.com":
		return ingest.Route{ID: "small", Tenant: "acme", MaxSize: 300}, true
	case "closed@p.example.com":
		return ingest.Route{ID: "closed", Tenant: "acme", Senders: a.deny}, true
	case "open@p.example.com":
		return ingest.Route{ID: "open", Tenant: "acme"}, true
	}
	return ingest.Route{}, false
}

func (a *policyAccepter) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.got)
}

func TestRoutePolicy(t *testing.T) {
	small := "Subject: hi\r\n\r\nshort\r\n"
	big := "Subject: hi\r\n\r\n" + strings.Repeat("0123456789abcdef\r\n", 100)
	tests := []struct {
		name     string
		from     string
		rcpt     string
		size     int64 // SIZE= of MAIL FROM, 0 for none
		data     string
		rcptCode int // 0: RCPT accepted
		dataCode int // reply to the data when RCPT was accepted
	}{
		{name: "sender allowed", from: "ann@example.org", rcpt: "closed@p.example.com", data: small, dataCode: 250},
		{name: "sender denied", from: "mallory@example.org", rcpt: "closed@p.example.com", rcptCode: 550},
		{name: "denied sender to another route", from: "mallory@example.org", rcpt: "open@p.example.com", data: small, dataCode: 250},
		{name: "under route size", from: "ann@example.org", rcpt: "small@p.example.com", data: small, dataCode: 250},
		{name: "declared size over route size", from: "ann@example.org", rcpt: "small@p.example.com", size: 5000, rcptCode: 552},
		{name: "declared size within route size", from: "ann@example.org", rcpt: "small@p.example.com", size: 100, data: small, dataCode: 250},
		{name: "data over route size", from: "ann@example.org", rcpt: "small@p.example.com", data: big, dataCode: 552},
		{name: "data over route size despite small declared size", from: "ann@example.org", rcpt: "small@p.example.com", size: 100, data: big, dataCode: 552},
		{name: "large data to a route without limit", from: "ann@example.org", rcpt: "open@p.example.com", data: big, dataCode: 250},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			acc := &policyAccepter{deny: &denySenders{"mallory@example.org": true}}
			srv, err := smtpd.New(smtpd.Config{}, acc, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			c, err := smtp.Dial(serve(t, srv))
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = c.Close() }()
			var opts *smtp.MailOptions
			if tt.size > 0 {
				opts = &smtp.MailOptions{Size: tt.size}
			}
			if err := c.Mail(tt.from, opts); err != nil {
				t.Fatalf("MAIL: %v", err)
			}
			err = c.Rcpt(tt.rcpt, nil)
			if smtpCode(err) != tt.rcptCode {
				t.Fatalf("RCPT: error = %v, want code %d", err, tt.rcptCode)
			}
			if tt.rcptCode != 0 {
				var se *smtp.SMTPError
				if tt.rcptCode == 550 && (!errors.As(err, &se) || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 1})) {
					t.Errorf("RCPT: error = %v, want 5.7.1", err)
				}
				return
			}
			w, err := c.Data()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.WriteString(w, tt.data); err != nil {
				t.Fatal(err)
			}
			err = w.Close()
			code := 250
			if err != nil {
				code = smtpCode(err)
			}
			if code != tt.dataCode {
				t.Fatalf("data: error = %v, want code %d", err, tt.dataCode)
			}
			if want := map[bool]int{true: 1, false: 0}[code == 250]; acc.count() != want {
				t.Errorf("recorded %d messages, want %d", acc.count(), want)
			}
			// The connection is still usable after a refused message.
			if err := c.Reset(); err != nil {
				t.Errorf("RSET after data: %v", err)
			}
		})
	}
}
