package spool_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/mailpipe/mailpipe/pkg/spool"
)

// TestCorpusUnchangedWithoutSpooling: with a threshold no part reaches, the skeleton is the input,
// byte for byte, for every corpus message.
func TestCorpusUnchangedWithoutSpooling(t *testing.T) {
	dir := t.TempDir()
	for _, f := range corpusFiles(t) {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		res, err := spool.Split(t.Context(), bytes.NewReader(raw), spool.Options{Threshold: 1 << 40, TempDir: dir})
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if len(res.Parts) != 0 || !bytes.Equal(res.Skeleton, raw) {
			t.Errorf("%s: %d parts spooled, skeleton equal to input: %v", f, len(res.Parts), bytes.Equal(res.Skeleton, raw))
		}
		if err := res.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCorpusMatchesEnmime splits every corpus message with a 1 KiB threshold and checks it
// against enmime (configured as package mime configures it):
//
//   - every spooled part has the SHA-256 and size of the part enmime decodes at the same
//     position (PartID) of the original message;
//   - enmime reads the skeleton as the same tree, with each spooled part present once, empty,
//     carrying its X-Mailpipe-Spooled field, and every other leaf with the same content;
//   - no byte is lost (skeleton + removed bodies = input).
func TestCorpusMatchesEnmime(t *testing.T) {
	p := oracle()
	dir := t.TempDir()
	var files, spooled, messages int
	for _, f := range corpusFiles(t) {
		name, _ := filepath.Rel(filepath.Dir(corpusDir(t)), f)
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		files++
		res, err := spool.Split(t.Context(), bytes.NewReader(raw), spool.Options{Threshold: 1 << 10, TempDir: dir})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		checkAccounting(t, name, raw, res)
		if len(res.Parts) > 0 {
			messages++
			spooled += len(res.Parts)
		}
		matchEnmime(t, p, name, raw, res)
		if err := res.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d files, %d spooled parts in %d messages", files, spooled, messages)
}
