package spool_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/mailpipe/mailpipe/pkg/spool"
)

// Parts Keep accepts stay in the skeleton byte for byte, however large; the others are spooled.
func TestKeep(t *testing.T) {
	text := strings.Repeat("a line of a long text body\r\n", 400)
	bin := strings.Repeat("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=\r\n", 300)
	msg := "From: a@example.com\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + text +
		"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n" + bin +
		"--b--\r\n"
	keep := func(mt string) bool { return mt == "" || strings.HasPrefix(mt, "text/") }
	res, err := spool.Split(t.Context(), strings.NewReader(msg), spool.Options{Threshold: 1024, Keep: keep})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = res.Close() }()
	if len(res.Parts) != 1 || res.Parts[0].ContentType != "application/octet-stream" {
		t.Fatalf("spooled %+v; want only the binary part", res.Parts)
	}
	if !bytes.Contains(res.Skeleton, []byte(text)) {
		t.Fatal("the text body is not in the skeleton")
	}
	if bytes.Contains(res.Skeleton, []byte("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=")) {
		t.Fatal("the binary body stayed in the skeleton")
	}
	// Without Keep both go.
	all, err := spool.Split(t.Context(), strings.NewReader(msg), spool.Options{Threshold: 1024})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = all.Close() }()
	if len(all.Parts) != 2 {
		t.Fatalf("spooled %d parts without Keep; want 2", len(all.Parts))
	}
}
