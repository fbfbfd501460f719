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
//
// The package is pure: it does no I/O, talks to no broker, store or network, and keeps no
// package-level state. A [Parser] is safe for concurrent use.
package mime
