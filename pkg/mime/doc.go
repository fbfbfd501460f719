// Package mime turns the raw bytes of an RFC 5322 / MIME message into a normalized [Message]:
// addresses, subject, date, message ids, text and HTML bodies in UTF-8, attachment metadata with
// the decoded bytes, every top-level header in order, and the problems met on the way.
//
// It wraps github.com/jhillyerd/enmime/v2 and adds what a pipeline needs on top of it:
//
//   - MIME-bomb limits ([Limits]: parts, nesting depth, total decoded size), enforced before
//     parsing (the input is cut or a too-deep container is neutralized, so enmime never sees the
//     excess) and checked again on the parsed tree, so the limits hold whatever enmime does.
//     Exceeding a limit yields [StatusPartial] and a warning, never an error or a crash.
//   - Parse problems are data: enmime's errors become [Warning] values with a machine-readable
//     name and a severity, and the [Status] says whether content was lost. [Parser.Parse]
//     returns an error only when not even the header block can be read ([ErrNoHeaders]).
//   - A charset policy: a declared charset is trusted; a part without one (or labelled us-ascii,
//     which in practice means "not declared") is kept as is when it is valid UTF-8 and only
//     otherwise detected, so UTF-8 text is never mangled by a detector's guess.
//   - Normalization of addresses (lower case, Unicode and ASCII/Punycode domain), message ids
//     and dates (UTC, many real-world formats).
//   - Speed: the multipart structure is found with byte searches over the message held in
//     memory and enmime reads each leaf part on its own, not through one boundary reader per
//     nesting level (split.go); the part tree is the one enmime builds, field for field, which
//     the tests check on the corpus and by fuzzing, and a message split is not sure of is read
//     by enmime whole. Plain values (media types, address lists, header blocks) take quick
//     paths held to the general ones by fuzz tests.
//
// The package is pure: it does no I/O, talks to no broker, store or network, and keeps no
// package-level state. A [Parser] is safe for concurrent use.
package mime
