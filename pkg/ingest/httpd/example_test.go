package httpd_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/mailpipe/mailpipe/pkg/ingest"
	"github.com/mailpipe/mailpipe/pkg/ingest/httpd"
)

func ExampleNew() {
	// Configure the hash of each key, never the key itself, with the tenant it belongs to.
	cfg := httpd.Config{APIKeys: []string{"acme:" + httpd.HashKey("s3cret")}}
	acc := &fakeAccepter{res: ingest.Result{ID: "01JB6Y2M3Q7V0000000000000A", ThreadKey: "q1@example.org"}}
	h, err := httpd.New(cfg, acc, slog.New(slog.DiscardHandler))
	if err != nil {
		panic(err)
	}

	req := httptest.NewRequestWithContext(context.Background(), http.MethodPost, "/v1/messages?mail_from=ann@example.org&rcpt_to=support@acme.example.com",
		strings.NewReader("Message-ID: <q1@example.org>\r\n\r\nHi\r\n"))
	req.Header.Set("Authorization", "Bearer s3cret")
	req.Header.Set("Content-Type", "message/rfc822")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	fmt.Print(rec.Code, " ", rec.Body.String())
	// Output:
	// 202 {"id":"01JB6Y2M3Q7V0000000000000A","thread_key":"q1@example.org"}
}
