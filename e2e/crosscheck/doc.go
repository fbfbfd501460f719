// Package crosscheck compares mailpipe's MIME parser (pkg/mime) with independent parsers on the
// shared real-world corpus: Node's mailparser and postal-mime, run by scripts/node/peers.mjs, and
// the expected outputs of the Rust mail-parser that the corpus carries (*.expected.json). It
// compares subject, from, to, whitespace-normalized text and the attachments' names, sizes and
// sha256. Every disagreement is either fixed or listed in testdata/disagreements.tsv with the
// reason mailpipe is right; see docs/parser-crosscheck.md.
//
// The package holds only the test.
package crosscheck
