package e2e

import (
	"bufio"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/mailpipe/mailpipe/pkg/events"
)

// attachmentSize is the attachment of the memory target: a message carrying 25 MiB
// must be parsed in under 64 MiB of peak RSS.
const (
	attachmentSize = 25 << 20
	maxPeakRSS     = 64 << 20
)

// TestParserPeakRSS runs `mailpipe parse` (the parser service's code path, the message handed
// over through the blob store as ingress does for large mail) on a message with a 25 MiB
// attachment and reads the process's peak RSS from the kernel. The binary is built without
// -race, whose shadow memory would measure the detector instead of the parser.
func TestParserPeakRSS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary and writes 35 MB")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "mailpipe")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "github.com/mailpipe/mailpipe/services/mailpipe")
	build.Dir = filepath.Join("..", "services")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building mailpipe: %v\n%s", err, b)
	}
	msg := filepath.Join(dir, "big.eml")
	want := writeBigMessage(t, msg)

	cmd := exec.CommandContext(t.Context(), bin, "parse", msg)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("mailpipe parse: %v\n%s", err, stderrOf(err))
	}
	var rec events.Parsed
	if err := json.Unmarshal(out, &rec); err != nil {
		t.Fatalf("decoding the record: %v", err)
	}
	var found bool
	for _, a := range rec.Attachments {
		if a.Filename == "big.bin" {
			found = true
			if a.Size != attachmentSize || a.Sha256 != want {
				t.Fatalf("attachment size %d sha256 %s; want %d %s", a.Size, a.Sha256, attachmentSize, want)
			}
		}
	}
	if !found || rec.ParseStatus != "ok" || rec.Text != "see the attachment\n" && rec.Text != "see the attachment" {
		t.Fatalf("record: status %s, text %q, attachments %+v", rec.ParseStatus, rec.Text, rec.Attachments)
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		t.Fatal("no rusage for the process")
	}
	peak := ru.Maxrss * 1024 // kilobytes on Linux
	t.Logf("peak RSS parsing a message with a %d MiB attachment: %.1f MiB", attachmentSize>>20, float64(peak)/(1<<20))
	if peak >= maxPeakRSS {
		t.Fatalf("peak RSS %.1f MiB; the target is under %d MiB", float64(peak)/(1<<20), maxPeakRSS>>20)
	}
}

// writeBigMessage writes a multipart message with a text part and a base64 attachment of
// attachmentSize random bytes, streaming, and returns the attachment's hex SHA-256.
func writeBigMessage(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	w := bufio.NewWriter(f)
	fmt.Fprint(w, "From: Ann <ann@example.org>\r\nTo: support@in.example.com\r\nSubject: big\r\n"+
		"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <big1@example.org>\r\nMIME-Version: 1.0\r\n"+
		"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"+
		"see the attachment\r\n--b1\r\nContent-Type: application/octet-stream\r\n"+
		"Content-Disposition: attachment; filename=\"big.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	sum := sha256.New()
	rng := rand.NewChaCha8([32]byte{1})
	lines := &lineWriter{w: w}
	enc := base64.NewEncoder(base64.StdEncoding, lines)
	if _, err := io.CopyN(io.MultiWriter(enc, sum), rng, attachmentSize); err != nil {
		t.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(w, "\r\n--b1--\r\n")
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(sum.Sum(nil))
}

// lineWriter breaks base64 into 76-character lines, as MIME requires.
type lineWriter struct {
	w   *bufio.Writer
	col int
}

func (l *lineWriter) Write(p []byte) (int, error) {
	for _, c := range p {
		if l.col == 76 {
			if _, err := l.w.WriteString("\r\n"); err != nil {
				return 0, err
			}
			l.col = 0
		}
		if err := l.w.WriteByte(c); err != nil {
			return 0, err
		}
		l.col++
	}
	return len(p), nil
}

func stderrOf(err error) string {
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		return string(ee.Stderr)
	}
	return ""
}
