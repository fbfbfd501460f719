package spool

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// chunkKind says how a chunk of input ends.
type chunkKind uint8

const (
	chunkLine    chunkKind = iota // a line ending with '\n'
	chunkPartial                  // a piece of a line longer than the read buffer
	chunkLast                     // the last line of the input, without '\n'
)

// stopKind is what a boundary line does to its multipart.
type stopKind uint8

const (
	// stopDelimiter opens the next part.
	stopDelimiter stopKind = iota + 1
	// stopFinal is the closing delimiter ("--b--"): the epilogue follows.
	stopFinal
	// stopEnd ends the part without opening another: a delimiter with no line break left in
	// its stream (enmime's boundaryReader.Next returns EOF on it).
	stopEnd
	// stopCut ends the part in the middle of a line, at hit.at: enmime's boundaryReader looks
	// for the boundary at every byte of the first 4096 bytes of a part (atPartStart stays set
	// for its first Read, which bufio makes 4096 bytes long), not only at line starts. The rest
	// of the part, up to the next boundary line, is read by no one (boundaryReader.Next
	// discards it).
	stopCut
	// stopCR ends the part at a CR that is not followed by LF, at hit.at: boundaryReader.Read
	// checks for the boundary two bytes after every CR, as if it were followed by LF. Next then
	// reads lines from the CR on: it skips those starting with CR or LF and fails the multipart
	// if the first other line is no boundary line (see splitter.resync).
	stopCR
)

// cut reports whether the hit ends the part inside the chunk, at hit.at, rather than at its
// start.
func (h hit) cut() bool { return h.kind == stopCut || h.kind == stopCR }

// partStartWindow is how far into a part enmime's boundaryReader checks every byte for the
// boundary: the size of the first Read, made by a default-size bufio.Reader.
const partStartWindow = 4096

// hit is a boundary line: the multipart level (index into splitter.stack) it belongs to.
type hit struct {
	ok    bool
	level int
	kind  stopKind
	at    int // for stopCut and stopCR: the offset in the chunk where the part ends
}

// chunk is a piece of input as returned by splitter.next. b is valid until the next read.
type chunk struct {
	b     []byte
	start bool // b begins a line
	kind  chunkKind
	hit   hit // for chunks that begin a line: the boundary this line is, if any
}

// levelState is where a multipart is in its stream.
type levelState uint8

const (
	// inPreamble: before the first delimiter. enmime's boundaryReader.Next reads whole lines here
	// and takes a line for a delimiter wherever the boundary sits in it.
	inPreamble levelState = iota
	// inPart: a part is open. enmime's boundaryReader.Read ends it at a line that starts with the
	// boundary (see matchRead).
	inPart
	// inEpilogue: after the closing delimiter; the boundary no longer means anything.
	inEpilogue
	// inResync: after stopCR, boundaryReader.Next reads lines as in the preamble, but the first
	// line that starts with neither CR nor LF must be a boundary line.
	inResync
)

// level is an open multipart.
type level struct {
	prefix []byte // "--" + boundary
	final  []byte // "--" + boundary + "--"
	state  levelState
	id     string // the container's PartID
	root   bool   // the top-level multipart (its children are numbered "1", "2", …)
	parts  int    // delimiters seen (enmime's indexPartID)

	partStart int64 // input offset where the open part's stream starts
	skelStart int   // skeleton offset where it starts
	fresh     bool  // the open part may still end mid-line (see stopCut)
	discard   bool  // the open part was cut: the rest of it, up to a boundary line, is dropped
	broken    bool  // enmime failed this multipart (see splitter.resync)
}

// window is the number of bytes enmime's boundaryReader peeks at the start of a line to
// recognise the boundary: len("--" + boundary + "--").
func (l *level) window() int { return len(l.final) }

// next returns the next chunk of input, classifying lines against the open multiparts. It
// returns io.EOF at the end of the input.
func (s *splitter) next() (chunk, error) {
	s.reads++
	if s.reads&1023 == 0 {
		if err := s.ctxErr(); err != nil {
			return chunk{}, fmt.Errorf("splitting message: %w", err)
		}
	}
	start, off := s.atStart, s.off
	s.look = false
	b, err := s.in.ReadSlice('\n')
	kind := chunkLine
	switch {
	case err == nil:
		s.atStart = true
	case errors.Is(err, bufio.ErrBufferFull):
		kind = chunkPartial
		s.atStart = false
		// Keep "\r\n" in one chunk, so a line break is never split across chunks.
		if len(b) > 1 && b[len(b)-1] == '\r' {
			_ = s.in.UnreadByte() // valid right after ReadSlice
			b = b[:len(b)-1]
		}
	case errors.Is(err, io.EOF):
		if len(b) == 0 {
			return chunk{}, io.EOF
		}
		kind = chunkLast
		s.atStart = false
	default:
		return chunk{}, fmt.Errorf("reading message: %w", err)
	}
	s.off += int64(len(b))
	s.chunkOff = off
	c := chunk{b: b, start: start, kind: kind}
	if len(s.stack) > 0 {
		// Cuts inside the chunk first: one of an enclosing level ends the stream of the levels
		// within it there, which classify must know. A boundary at the line start comes before
		// any cut.
		var cut hit
		c.b, cut = s.cuts(c.b, start, kind, off)
		if start {
			c.b, c.hit = s.classify(c.b, kind)
		}
		if !c.hit.ok {
			c.hit = cut
		}
	}
	return c, nil
}

// cuts finds the earliest place in chunk b where enmime ends an open part inside the chunk (see
// stopCut and stopCR). Levels are scanned outermost first; a cut found for a level ends the
// streams of the levels within it, so their windows must end before it (s.limits). On a tie the
// outer level wins, as it reads first.
func (s *splitter) cuts(b []byte, start bool, kind chunkKind, off int64) ([]byte, hit) {
	best := hit{}
	s.limits = s.limits[:0]
	for i, lv := range s.stack {
		limit := len(b) + 1 // no enclosing cut in this chunk
		if best.ok {
			limit = best.at
		}
		s.limits = append(s.limits, limit)
		if lv.state != inPart {
			continue
		}
		var at int
		b, at = s.cutAt(b, i, start, kind, off, limit)
		if at >= 0 && (!best.ok || at < best.at) {
			best = hit{ok: true, level: i, at: at, kind: stopCut}
			if b[at] == '\r' {
				best.kind = stopCR
			}
		}
	}
	return b, best
}

// cutAt returns the earliest offset below limit where level i's open part ends inside chunk b,
// or -1: a CR not followed by LF with a matching window two bytes on (stopCR), or, in the first
// partStartWindow bytes of the part, any other byte but LF where the window matches (stopCut).
// Windows must lie within limit, the end of the level's stream in this chunk, if any.
func (s *splitter) cutAt(b []byte, i int, start bool, kind chunkKind, off int64, limit int) ([]byte, int) {
	lv := s.stack[i]
	// window returns the bytes of level i's stream from offset w on (at most what a window
	// needs).
	window := func(w int) []byte {
		if limit <= len(b) {
			return b[min(w, limit):limit]
		}
		if len(b)-w < lv.window() && kind != chunkLast {
			a := s.lookahead(b)
			b = a.buf[:len(b)]
			out, _ := a.stream(min(w, len(b)), a.lineEnd(min(w, len(b))), i)
			return out
		}
		return b[min(w, len(b)):]
	}
	end := min(len(b), limit)
	// Stray CRs.
	cr := -1
	for q := 0; q < end; {
		j := bytes.IndexByte(b[q:end], '\r')
		if j < 0 {
			break
		}
		c := q + j
		q = c + 1
		if c+1 >= len(b) || b[c+1] == '\n' {
			continue // the end of the input, or a line break (classify's)
		}
		if c+2 <= limit && matchWindow(window(c+2), lv) {
			cr = c
			break
		}
	}
	// The first 4 KiB of the part.
	if lv.fresh {
		if until := lv.partStart + partStartWindow - off; until <= 0 {
			lv.fresh = false
		} else {
			lo := 0
			if start {
				lo = 1 // the line start is classify's
			}
			hi := int(min(int64(end), until))
			if cr >= 0 {
				hi = min(hi, cr)
			}
			for q := lo; q < hi; {
				j := bytes.Index(b[q:end], lv.prefix)
				if j < 0 {
					break
				}
				p := q + j
				for _, w := range [2]int{p - 1, p} {
					if w >= lo && w < hi && b[w] != '\r' && b[w] != '\n' && matchWindow(window(w), lv) {
						return b, w
					}
				}
				q = p + 1
			}
		}
	}
	return b, cr
}

// windowOpen reports whether input offset off lies in the first partStartWindow bytes of an
// open part, where enmime may still end it mid-line. Removing bytes before off from the skeleton
// would then move other bytes into that window.
func (s *splitter) windowOpen(off int64) bool {
	for _, lv := range s.stack {
		if lv.state == inPart && !lv.discard && off < lv.partStart+partStartWindow {
			return true
		}
	}
	return false
}

// ahead is the input from the start of the current line on, as far as classification needs to
// look: a copy of the line followed by the bytes after it (bufio.Reader.Peek). It answers, with
// enmime's rules, whether a line in it is a boundary line of an open multipart, which depends on
// what follows that line in the stream of the multipart (see classify). Answers are memoized:
// deciding for one level may ask about the levels enclosing it at the following lines.
type ahead struct {
	s    *splitter
	buf  []byte
	eof  bool // buf reaches the end of the input (else it may be cut by the buffer size)
	memo map[[2]int]bool
}

// lookahead returns the look-ahead for the current chunk b, reading it once per chunk. The chunk
// is copied first, since Peek invalidates it; the copy is ahead.buf[:len(b)].
func (s *splitter) lookahead(b []byte) *ahead {
	if !s.look {
		s.scratch = append(s.scratch[:0], b...)
		want := min((len(s.stack)+1)*(s.maxWindow+4), s.in.Size())
		peek, err := s.in.Peek(want)
		s.scratch = append(s.scratch, peek...)
		s.ahead = ahead{s: s, buf: s.scratch, eof: err != nil && len(peek) < want}
		clear(s.aheadMemo)
		s.ahead.memo = s.aheadMemo
		s.look = true
	}
	return &s.ahead
}

// stream returns the bytes of level j's stream from offset from on (from lies in the line that
// ends at lineEnd, just after its '\n'): the rest of that line, without its line break when the
// next line is a boundary of an enclosing level, and then the bytes after it unless the next line
// is such a boundary or an empty line followed by one (its line break is the boundary's then).
// eol reports whether the line break is in the stream.
func (a *ahead) stream(from, lineEnd, j int) (b []byte, eol bool) {
	if lineEnd < 0 || lineEnd > len(a.buf) {
		return a.buf[from:], !a.eof
	}
	switch {
	case lineEnd == len(a.buf) && a.eof:
		return a.buf[from:lineEnd], true
	case a.enclosing(lineEnd, j):
		return trimEOL(a.buf[from:lineEnd]), false
	}
	if n := blankLine(a.buf[lineEnd:]); n > 0 && a.enclosing(lineEnd+n, j) {
		return a.buf[from:lineEnd], true
	}
	return a.buf[from:], true
}

// lineEnd returns the offset just after the '\n' that ends the line holding offset o, or -1.
func (a *ahead) lineEnd(o int) int {
	if i := bytes.IndexByte(a.buf[o:], '\n'); i >= 0 {
		return o + i + 1
	}
	return -1
}

// enclosing reports whether the line at offset o is a boundary line of a level enclosing level j.
func (a *ahead) enclosing(o, j int) bool {
	for k := range j {
		if a.s.stack[k].state == inPart && a.boundary(o, k) {
			return true
		}
	}
	return false
}

// boundary reports whether the line at offset o ends the open part of level k (matchRead on its
// stream).
func (a *ahead) boundary(o, k int) bool {
	key := [2]int{o, k}
	if v, ok := a.memo[key]; ok {
		return v
	}
	lv := a.s.stack[k]
	v := false
	if b := a.buf[o:]; len(b) >= 3 && (b[0] == '-' && b[1] == '-' || b[1] == '-' && b[2] == '-') {
		w, _ := a.stream(o, a.lineEnd(o), k)
		v = matchRead(w, lv)
	}
	a.memo[key] = v
	return v
}

// classify tells whether the line starting with b is a boundary line of an open multipart, with
// enmime's rules, so that both split the stream at the same lines:
//
//   - The outermost level that matches wins: enmime reads an inner multipart through the reader
//     of the enclosing part, which ends first.
//   - While a part is open, a line ends it when its first len("--b--") bytes hold "--b" at
//     offset 0 or 1 followed by white space, or are "--b--" (boundaryReader.Read). Those bytes
//     must exist in the level's stream: a delimiter line at the very end of the stream is not
//     seen. The stream of a level ends before the line break that precedes a boundary line of
//     an enclosing level, which is why classify may look at the next lines.
//   - In the preamble (and after stopCR), a line is a delimiter when the first "--b" in it is
//     followed by white space and the line has a line break in the stream, and the closing
//     delimiter when it holds "--b--" anywhere; lines starting with CR or LF never count
//     (boundaryReader.Next).
//   - A level's stream may also end inside the line, where an enclosing level cuts its part
//     (s.limits, see cuts).
//
// Whether a short line is a boundary depends on what follows it (see ahead); classify then copies
// b, since looking ahead invalidates the read buffer, and returns the bytes to use.
func (s *splitter) classify(b []byte, kind chunkKind) ([]byte, hit) {
	n := len(s.stack)
	inner := s.stack[n-1]
	// A boundary line for an open part has "--" at offset 0 or 1.
	cand := len(b) >= 2 && b[0] == '-' && b[1] == '-' || len(b) >= 3 && b[1] == '-' && b[2] == '-'
	preamble := (inner.state == inPreamble || inner.state == inResync) &&
		len(b) > 0 && b[0] != '\r' && b[0] != '\n' && bytes.Contains(b, inner.prefix)
	if !cand && !preamble {
		return b, hit{}
	}
	// A long line holds the whole window before its line break: only a short line, or the line
	// break of a preamble delimiter, needs what follows.
	var a *ahead
	if kind == chunkLine && (len(b) <= s.maxWindow+2 || preamble) {
		a = s.lookahead(b)
		b = a.buf[:len(b)]
	}
	for i, lv := range s.stack {
		// line is the line as it is in level i's stream, w the stream from its start.
		line, w, eol := b, b, kind != chunkLast
		switch {
		case s.limits[i] <= len(b):
			// An enclosing level's stream ends inside the line.
			line, w, eol = b[:s.limits[i]], b[:s.limits[i]], false
		case a != nil:
			w, eol = a.stream(0, len(b), i)
			line = w[:min(len(w), len(b))]
		}
		switch lv.state {
		case inPart:
			if !cand || !matchRead(w, lv) {
				continue
			}
			switch {
			case bytes.Contains(line, lv.final):
				return b, hit{ok: true, level: i, kind: stopFinal}
			case eol:
				return b, hit{ok: true, level: i, kind: stopDelimiter}
			default:
				return b, hit{ok: true, level: i, kind: stopEnd}
			}
		case inPreamble, inResync:
			if !preamble || i != n-1 {
				continue
			}
			if bytes.Contains(line, lv.final) {
				return b, hit{ok: true, level: i, kind: stopFinal}
			}
			if j := bytes.Index(line, lv.prefix); j >= 0 && j+len(lv.prefix) < len(line) && isSpace(line[j+len(lv.prefix)]) && eol {
				return b, hit{ok: true, level: i, kind: stopDelimiter}
			}
		}
	}
	return b, hit{}
}

// matchRead is enmime's boundaryReader check at the start of a line: the first len("--b--")
// bytes of the stream from there are "--b--", or hold "--b" followed by white space (which,
// in that window, puts "--b" at offset 0 or 1). A line starting with CR or LF never matches.
func matchRead(b []byte, lv *level) bool {
	// enmime skips the check at a line break followed by CR or LF.
	return len(b) > 0 && b[0] != '\r' && b[0] != '\n' && matchWindow(b, lv)
}

// matchWindow is boundaryReader's test on the len("--b--") bytes it peeks at (isDelimiter or
// isTerminator); fewer bytes never match.
func matchWindow(b []byte, lv *level) bool {
	w := lv.window()
	if len(b) < w {
		return false
	}
	b = b[:w]
	if bytes.Equal(b, lv.final) {
		return true
	}
	i := bytes.Index(b, lv.prefix)
	return i >= 0 && i+len(lv.prefix) < w && isSpace(b[i+len(lv.prefix)])
}

// isSpace is unicode.IsSpace(rune(c)), as enmime applies it to a byte.
func isSpace(c byte) bool {
	switch c {
	case '\t', '\n', '\v', '\f', '\r', ' ', 0x85, 0xA0:
		return true
	}
	return false
}

// blankLine returns the length of the empty line b starts with ("\n" or "\r\n"), or 0.
func blankLine(b []byte) int {
	switch {
	case len(b) >= 1 && b[0] == '\n':
		return 1
	case len(b) >= 2 && b[0] == '\r' && b[1] == '\n':
		return 2
	}
	return 0
}

// trimEOL removes a trailing "\n" or "\r\n".
func trimEOL(b []byte) []byte {
	return b[:len(b)-eolLen(b)]
}

// eolLen is the length of the line break at the end of b: 2 for "\r\n", 1 for "\n", else 0.
func eolLen(b []byte) int {
	n := len(b)
	switch {
	case n >= 2 && b[n-2] == '\r' && b[n-1] == '\n':
		return 2
	case n >= 1 && b[n-1] == '\n':
		return 1
	}
	return 0
}
