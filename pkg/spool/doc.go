// Package spool moves the bodies of large MIME leaf parts out of a raw message before the MIME
// parser sees it, so that parsing a message with a large attachment costs memory in proportion
// to its headers and small parts, not to the attachment.
//
// It exists because the parser (package mime, on github.com/jhillyerd/enmime/v2) holds the raw
// message and every decoded part in memory at once: a 25 MiB attachment is about 34 MiB of
// base64, and raw bytes plus enmime's copy plus the decoded bytes come to about 90 MiB, far above
// the 64 MiB peak the parser stage is allowed (issue 4, "Parser in full"). [Split] reads the
// message once, as a stream, and returns a skeleton: the message with the body of every leaf part
// whose encoded body exceeds a threshold removed. The removed bodies are decoded on the way
// (base64 and quoted-printable, with enmime's tolerance for junk) into temporary files, and their
// SHA-256, decoded size and first bytes are computed without a second pass. The skeleton is small
// and goes to the MIME parser as before; the spooled parts are found in the parsed tree by the
// header [Header] that Split adds to each of them.
//
// Split follows the MIME structure the way enmime does (the same header folding and field rules,
// the same boundary recognition, an inner part ending at any enclosing boundary, message/rfc822
// parts read as leaves), so that enmime reads the skeleton as the same tree with empty bodies
// where parts were spooled. Where it cannot be sure of that, it does not split: a part whose
// header block enmime would reject, an unparseable Content-Type, a multipart without a boundary
// at the top level, an over-long boundary, CR-only line endings, or a message past the parts or
// depth limit is passed through unchanged, byte for byte. Nothing is ever lost: the skeleton plus
// the spooled bodies are the input, less the bodies' transfer encoding (see [Result]).
//
// Memory use is bounded by the threshold plus the line buffer and a few fixed buffers, whatever
// the message size, as long as the parts that carry the bulk are spooled; the skeleton holds the
// rest. The package keeps no package-level state, and Split may run concurrently.
package spool
