package mime_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/mailpipe/mailpipe/pkg/mime"
)

// Header blocks beyond the limits are cut, the record says partial with a warning, and the body
// is still read.
func TestHeaderLimits(t *testing.T) {
	manyFields := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "X-Filler-%d: value %d\r\n", i, i)
		}
		return b.String()
	}
	const top = "From: a@example.com\r\nTo: b@example.com\r\nSubject: limits\r\n"
	for _, tt := range []struct {
		name        string
		limits      mime.Limits
		raw         string
		wantWarning string
		wantHeaders int // -1: do not check
		wantSubject string
		wantText    string
	}{
		{
			name:        "within the limits",
			raw:         top + manyFields(10) + "\r\nbody text\r\n",
			wantHeaders: 13, wantSubject: "limits", wantText: "body text",
		},
		{
			name:        "too many fields in the message header",
			limits:      mime.Limits{MaxHeaderFields: 50},
			raw:         top + manyFields(100) + "\r\nbody text\r\n",
			wantWarning: mime.WarnLimitHeaderFields, wantHeaders: 50, wantSubject: "limits", wantText: "body text",
		},
		{
			name:        "default field limit",
			raw:         top + manyFields(2000) + "\r\nbody text\r\n",
			wantWarning: mime.WarnLimitHeaderFields, wantHeaders: mime.DefaultMaxHeaderFields, wantSubject: "limits", wantText: "body text",
		},
		{
			name:        "header block too large",
			limits:      mime.Limits{MaxHeaderBytes: 1024},
			raw:         top + manyFields(100) + "\r\nbody text\r\n",
			wantWarning: mime.WarnLimitHeaderBytes, wantHeaders: -1, wantSubject: "limits", wantText: "body text",
		},
		{
			name:        "one giant first field is kept, cut",
			limits:      mime.Limits{MaxHeaderBytes: 1024},
			raw:         "Subject: " + strings.Repeat("x", 4000) + "\r\nFrom: a@example.com\r\n\r\nbody text\r\n",
			wantWarning: mime.WarnLimitHeaderBytes, wantHeaders: 1, wantSubject: strings.Repeat("x", 1024), wantText: "body text",
		},
		{
			name:   "too many fields in a part header",
			limits: mime.Limits{MaxHeaderFields: 50},
			raw: top + "Content-Type: multipart/mixed; boundary=b\r\n\r\n" +
				"--b\r\nContent-Type: text/plain\r\n\r\nfirst part\r\n" +
				"--b\r\n" + manyFields(60) + "Content-Type: text/plain\r\n\r\nsecond part\r\n--b--\r\n",
			wantWarning: mime.WarnLimitHeaderFields, wantHeaders: 4, wantSubject: "limits", wantText: "first part",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := mime.NewParser(mime.WithLimits(tt.limits))
			if err != nil {
				t.Fatal(err)
			}
			m, err := p.Parse([]byte(tt.raw))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, w := range m.Warnings {
				if strings.HasPrefix(w.Name, "limit_") {
					got = append(got, w.Name)
				}
			}
			if tt.wantWarning == "" {
				if len(got) != 0 || m.Status != mime.StatusOK {
					t.Fatalf("limit warnings %v, status %s; want none, ok", got, m.Status)
				}
			} else if len(got) != 1 || got[0] != tt.wantWarning || m.Status != mime.StatusPartial {
				t.Fatalf("limit warnings %v, status %s; want [%s], partial", got, m.Status, tt.wantWarning)
			}
			if tt.wantHeaders >= 0 && len(m.Headers) != tt.wantHeaders {
				t.Errorf("%d headers; want %d", len(m.Headers), tt.wantHeaders)
			}
			if m.Subject != tt.wantSubject {
				t.Errorf("subject %.40q (%d bytes); want %.40q (%d bytes)", m.Subject, len(m.Subject), tt.wantSubject, len(tt.wantSubject))
			}
			if strings.TrimSpace(m.Text) != tt.wantText {
				t.Errorf("text %q; want %q", m.Text, tt.wantText)
			}
		})
	}
}
