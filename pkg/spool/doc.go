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
// Split follows the MIME structure the way enmime does, so that enmime reads the skeleton as
// the same tree with empty bodies where parts were spooled: the same header block and folding
// rules, the same media type parser, a part with a boundary parameter read as a multipart unless
// it is text/plain or text/html, message/rfc822 parts read as leaves, an inner part ending at any
// enclosing boundary, and boundary recognition as enmime's boundaryReader does it, down to its
// quirks: a delimiter may be indented by one character or followed by any white space; a
// delimiter near the end of its stream is not seen; the boundary is looked for at every byte of
// the first 4 KiB of a part, so a boundary string in the middle of a line ends the part there;
// a CR not followed by LF is checked as if it were, so "\rx--b " ends a part too (and may make
// enmime give up the multipart); a preamble or delimiter line longer than 4 KiB comes out
// garbled. Bodies whose removal could change what enmime makes of the rest (one that ends within
// the first 4 KiB of its part) are kept. The corpus tests, a generator of tricky messages and
// the fuzz test check all this against enmime itself.
//
// Where Split cannot be sure, it does not split: CR-only line endings, a header block enmime
// would reject, an unparseable Content-Type, a top-level multipart without a boundary, a boundary
// longer than 1000 bytes, or, for the rest of the message, a preamble or boundary line longer
// than 4 KiB, a top-level multipart enmime gives up on, and the parts and depth limits; such
// input is passed through byte for byte. Nothing is ever lost: the skeleton plus the spooled
// bodies are the input (see [Result]).
//
// Memory use is bounded by the threshold plus the line buffer and a few fixed buffers, whatever
// the message size, as long as the parts that carry the bulk are spooled; the skeleton holds the
// rest. The package keeps no package-level state, and Split may run concurrently.
package spool
