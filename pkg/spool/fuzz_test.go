package spool_test

import (
	"bytes"
	"testing"

	"github.com/mailpipe/mailpipe/pkg/spool"
)

// FuzzSplit checks, for any input: Split never panics or fails on a good reader; with a
// threshold nothing reaches, the skeleton is the input; with a tiny one, no byte is lost
// (checkAccounting), every part's file matches its size, digest and head, a decoded size never
// exceeds the encoded one, the decoded total stays within MaxDecodedSize, enmime reads the
// skeleton as it reads the input (matchEnmime), and Close leaves no file behind. The seed corpus
// in testdata/fuzz/FuzzSplit is replayed by every go test run.
//
// Each '@' of the fuzzer's input stands for 4100 bytes of base64 alphabet: a body is spooled
// inside a multipart only past the first 4 KiB of its part, which the fuzzer would seldom reach
// byte by byte.
func FuzzSplit(f *testing.F) {
	for _, s := range []string{
		"Content-Type: multipart/mixed; boundary=b\n\npre\n--b\nContent-Type: multipart/alternative; boundary=c\n\n--c\n\nsmall\n--c\n" +
			"Content-Transfer-Encoding: quoted-printable\n\n=E9@=\n=ZZ\n--c--\n--b\nContent-Transfer-Encoding: base64\n\n@\n--b--\nepi\n",
		"Content-Type: multipart/mixed; boundary=\"b c\"\r\n\r\n--b c\r\n\r\nab --b c d\r\n--b c\r\nContent-Type: message/rfc822\r\n\r\n@\r\n--b c--\r\n",
		"From x\nContent-Type: text/plain\nContent-Transfer-Encoding: base64\n\nAA!A=BB\n*",
	} {
		f.Add([]byte(s))
	}
	p := oracle()
	filler := bytes.Repeat([]byte("QUJD"), 1025)
	f.Fuzz(func(t *testing.T, in []byte) {
		in = bytes.ReplaceAll(in, []byte("@"), filler)
		dir := t.TempDir()

		res, err := spool.Split(t.Context(), bytes.NewReader(in), spool.Options{Threshold: 1 << 40, TempDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(res.Skeleton, in) || len(res.Parts) != 0 {
			t.Fatalf("with a huge threshold: %d parts, skeleton equal to input: %v", len(res.Parts), bytes.Equal(res.Skeleton, in))
		}

		for _, opts := range []spool.Options{
			{Threshold: 4, MaxParts: 64, MaxDepth: 8},
			{Threshold: 4, MaxDecodedSize: 64},
		} {
			opts.TempDir = dir
			res, err := spool.Split(t.Context(), bytes.NewReader(in), opts)
			if err != nil {
				t.Fatal(err)
			}
			checkAccounting(t, "input", in, res)
			var total int64
			truncated := false
			for i := range res.Parts {
				part := &res.Parts[i]
				readPart(t, part)
				if part.Size > part.EncodedSize {
					t.Errorf("part %s: %d decoded bytes from %d encoded", part.PartID, part.Size, part.EncodedSize)
				}
				total += part.Size
				truncated = truncated || part.Truncated
			}
			if opts.MaxDecodedSize > 0 && total > opts.MaxDecodedSize {
				t.Errorf("%d decoded bytes spooled, limit %d", total, opts.MaxDecodedSize)
			}
			if !truncated {
				matchEnmime(t, p, "input", in, res)
			}
			if err := res.Close(); err != nil {
				t.Fatal(err)
			}
			if n := countFiles(t, dir); n != 0 {
				t.Fatalf("%d files left after Close", n)
			}
		}
	})
}
