package spool

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/jhillyerd/enmime/v2/mediatype"
)

// splitter is the state of one Split call. It walks the MIME structure as a recursive descent
// over lines, like enmime's parseParts, writing every byte it does not spool to skel.
type splitter struct {
	// ctxErr is ctx.Err of the Split call. The splitter lives for that call only; it keeps the
	// method rather than the context because the io.Reader methods that read on its behalf
	// (bodyReader) cannot take one.
	ctxErr func() error
	opt    Options
	in     *bufio.Reader

	atStart  bool  // the next chunk begins a line
	off      int64 // input offset of the next byte to read
	chunkOff int64 // input offset of the last chunk read
	reads    int   // chunks read, to check ctx now and then

	limits    []int // per level, where an enclosing level's stream ends in the current chunk (see cuts)
	look      bool  // ahead holds the current chunk's look-ahead
	ahead     ahead // see lookahead
	aheadMemo map[[2]int]bool
	scratch   []byte
	hline     []byte // the header line being read (see header)

	skel    bytes.Buffer
	body    bytes.Buffer // a leaf body until it is known to be small or large
	copyBuf []byte

	stack     []*level // open multiparts, outermost first
	maxWindow int      // the largest window() on the stack

	// stop is the boundary line that ended the stream being read: its first chunk, read but not
	// yet written. The level that owns it writes it.
	stop    hit
	stopBuf chunk
	eof     bool

	entities int   // MIME entities seen, the root included
	budget   int64 // decoded bytes spooled parts may still write
	done     bool  // a limit was hit and the rest was passed through
	broken   bool  // a multipart just failed in enmime (see resync)
	res      *Result
}

func (s *splitter) warn(name string, severe bool, format string, args ...any) {
	s.res.Warnings = append(s.res.Warnings, Warning{Name: name, Severe: severe, Detail: fmt.Sprintf(format, args...)})
}

func (s *splitter) run() error {
	if err := s.skipJunk(); err != nil {
		return err
	}
	s.entities = 1
	h, err := s.header()
	if err != nil || h.blank == nil {
		return err
	}
	if reason := h.unreadable(); reason != "" {
		return s.opaque(h, "top-level "+reason)
	}
	mtype, params, ok := h.mediaType()
	switch {
	case !ok:
		return s.opaque(h, "top-level Content-Type cannot be parsed")
	case strings.HasPrefix(mtype, "multipart/") && params["boundary"] == "":
		// enmime reads it as one part or fails, depending on MultipartWOBoundaryAsSinglePart.
		return s.opaque(h, "top-level multipart has no boundary")
	case strings.HasPrefix(mtype, "multipart/"):
		return s.multipart(h, params["boundary"], 0, "0", true)
	default:
		return s.leaf(h, "0", mtype)
	}
}

// skipJunk passes what package mime strips before enmime reads the header (see its preprocess):
// a byte-order mark, leading white space, and up to 8 non-header lines (an mbox From_ line, a
// BSMTP wrapper) when a header field follows them.
func (s *splitter) skipJunk() error {
	if p, _ := s.in.Peek(3); bytes.Equal(p, []byte("\xef\xbb\xbf")) {
		s.skel.Write(p)
		_, _ = s.in.Discard(3)
		s.off += 3
	}
	for {
		c, err := s.in.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("reading message: %w", err)
		}
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			_ = s.in.UnreadByte()
			break
		}
		s.skel.WriteByte(c)
		s.off++
	}
	p, _ := s.in.Peek(s.in.Size())
	firstLine := func(b []byte) (line []byte, n int) {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			return trimEOL(b[:i+1]), i + 1
		}
		return b, len(b)
	}
	rest, skipped := p, 0
	for range 8 {
		line, n := firstLine(rest)
		if len(line) == 0 || isFieldLine(line) {
			break
		}
		if n == len(rest) {
			return nil // junk up to the end of what is buffered: no header follows in sight
		}
		skipped++
		rest = rest[n:]
	}
	if skipped == 0 {
		return nil
	}
	if line, _ := firstLine(rest); isFieldLine(line) {
		n := len(p) - len(rest)
		s.skel.Write(p[:n])
		_, _ = s.in.Discard(n)
		s.off += int64(n)
	}
	return nil
}

// isFieldLine is package mime's test for the first header line: a name of printable ASCII other
// than ':' (optionally followed by blanks) and a colon.
func isFieldLine(line []byte) bool {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return false
	}
	name := bytes.TrimRight(line[:i], " \t")
	if len(name) == 0 {
		return false
	}
	for _, c := range name {
		if c < 33 || c > 126 {
			return false
		}
	}
	return true
}

// entity reads one part of a multipart at the given depth: its header block, then its body or
// its parts.
func (s *splitter) entity(depth int, id string) error {
	s.entities++
	if s.entities > s.opt.MaxParts {
		s.warn(WarnLimitParts, false, "message has more than %d MIME parts; the rest was not split", s.opt.MaxParts)
		return s.passRest()
	}
	h, err := s.header()
	if err != nil || h.blank == nil {
		return err
	}
	if reason := h.unreadable(); reason != "" {
		return s.opaque(h, "part "+id+": "+reason)
	}
	mtype, params, ok := h.mediaType()
	if !ok {
		return s.opaque(h, "part "+id+": Content-Type cannot be parsed")
	}
	// enmime: a part with a boundary parameter is a multipart unless it is text/plain or
	// text/html, whatever its type (parseParts, detectTextHeader).
	if b := params["boundary"]; b != "" && mtype != "text/plain" && mtype != "text/html" {
		return s.multipart(h, b, depth, id, false)
	}
	return s.leaf(h, id, mtype)
}

// multipart reads the body of a multipart entity at depth (its header already read) up to the end
// of its stream.
func (s *splitter) multipart(h *header, boundary string, depth int, id string, root bool) error {
	if depth+1 > s.opt.MaxDepth {
		s.warn(WarnLimitDepth, false, "MIME nesting deeper than %d levels; the rest was not split", s.opt.MaxDepth)
		s.skel.Write(h.blank)
		return s.passRest()
	}
	if len(boundary) > maxBoundary {
		return s.opaque(h, fmt.Sprintf("part %s: boundary longer than %d bytes", id, maxBoundary))
	}
	s.skel.Write(h.blank)
	lv := &level{
		prefix: []byte("--" + boundary),
		final:  []byte("--" + boundary + "--"),
		id:     id,
		root:   root,
	}
	s.push(lv)
	defer s.pop()
	me := len(s.stack) - 1
	for {
		switch {
		case lv.state == inResync:
			if err := s.resync(lv, me); err != nil {
				return err
			}
			if lv.broken {
				if me == 0 {
					// enmime fails the whole message: nothing after this matters.
					s.warn(WarnNotSplit, false, "enmime cannot read the message past a stray CR; the rest was not split")
					return s.passRest()
				}
				s.broken = true // the enclosing part drops the rest (see entity's caller below)
				return nil
			}
		case lv.state != inPart || lv.discard:
			// Preamble, epilogue, or the dropped rest of a cut part: kept as is, up to a
			// boundary line.
			if _, err := s.copyUntilStop(); err != nil {
				return err
			}
		}
		if s.done || !s.stop.ok || s.stop.level < me {
			return nil // end of input, or of an enclosing part
		}
		kind := s.stop.kind
		if kind != stopCut && longLine(s.stopBuf) {
			return s.unsafeLine()
		}
		if err := s.writeStopLine(); err != nil {
			return err
		}
		switch kind {
		case stopCut:
			lv.discard, lv.fresh = true, false
			continue
		case stopCR:
			lv.state, lv.discard, lv.fresh = inResync, false, false
			continue
		case stopDelimiter:
		default:
			lv.state = inEpilogue
			continue
		}
		lv.state, lv.discard, lv.fresh, lv.partStart, lv.skelStart = inPart, false, true, s.off, s.skel.Len()
		lv.parts++
		child := strconv.Itoa(lv.parts)
		if !lv.root {
			child = lv.id + "." + child
		}
		if err := s.entity(depth+1, child); err != nil {
			return err
		}
		if s.broken {
			// A multipart in this part failed in enmime, which then discards the rest of the
			// part up to the next boundary line.
			s.broken = false
			lv.discard, lv.fresh = true, false
		}
	}
}

// resync follows boundaryReader.Next after stopCR: lines starting with CR or LF are skipped; the
// first other line must be a boundary line of the level (classify reads it as in the preamble)
// or end its stream, else enmime fails the multipart (lv.broken). It copies what it reads up to
// a boundary line (left in s.stop) or the end of the input.
func (s *splitter) resync(lv *level, me int) error {
	for {
		c, err := s.next()
		if errors.Is(err, io.EOF) {
			s.eof = true
			return nil
		}
		if err != nil {
			return err
		}
		if c.hit.ok {
			s.skel.Write(c.before())
			s.setStop(c)
			return nil
		}
		if c.start && longLine(c) {
			s.setStop(c) // written by passRest
			return s.unsafeLine()
		}
		if c.start && len(c.b) > 0 && c.b[0] != '\r' && c.b[0] != '\n' {
			// Not a boundary line. It still ends the stream quietly when it is the stream's
			// last line (Next returns io.EOF before it complains).
			last := c.kind == chunkLast
			if c.kind == chunkLine {
				a := s.lookahead(c.b)
				c.b = a.buf[:len(c.b)]
				last = a.enclosing(len(c.b), me)
			}
			if !last {
				lv.broken = true
				s.skel.Write(c.b)
				return nil
			}
		}
		s.skel.Write(c.b)
	}
}

func (s *splitter) push(lv *level) {
	s.stack = append(s.stack, lv)
	s.maxWindow = max(s.maxWindow, lv.window())
}

func (s *splitter) pop() {
	s.stack = s.stack[:len(s.stack)-1]
	s.maxWindow = 0
	for _, lv := range s.stack {
		s.maxWindow = max(s.maxWindow, lv.window())
	}
}

// enmimeLineBuffer is the size of the bufio.Reader enmime's boundaryReader.Next reads lines from.
// A line that does not fit comes out garbled (Next keeps a slice of the buffer across refills):
// its first 4096 bytes are overwritten by the bytes that follow it, so what enmime makes of it
// depends on those bytes.
const enmimeLineBuffer = 4096

// longLine reports whether the line starting with chunk c does not fit enmime's line buffer.
func longLine(c chunk) bool { return c.kind == chunkPartial || len(c.b) >= enmimeLineBuffer }

// unsafeLine passes the rest of the input through from a line that enmime reads garbled (see
// enmimeLineBuffer): removing any byte after it could change what enmime makes of it.
func (s *splitter) unsafeLine() error {
	s.warn(WarnNotSplit, false, "a preamble or boundary line is longer than %d bytes; the rest was not split", enmimeLineBuffer-1)
	return s.passRest()
}

// copyUntilStop copies lines to the skeleton up to a boundary line (left in s.stop) or the end
// of the input, and returns the bytes copied.
func (s *splitter) copyUntilStop() (int64, error) {
	var n int64
	for {
		c, err := s.next()
		if errors.Is(err, io.EOF) {
			s.eof = true
			return n, nil
		}
		if err != nil {
			return n, err
		}
		if c.hit.ok {
			s.skel.Write(c.before())
			n += int64(len(c.before()))
			s.setStop(c)
			return n, nil
		}
		if c.start && longLine(c) && len(s.stack) > 0 && s.stack[len(s.stack)-1].state == inPreamble {
			s.setStop(c) // written by passRest
			return n, s.unsafeLine()
		}
		s.skel.Write(c.b)
		n += int64(len(c.b))
	}
}

// before returns the bytes of a chunk that precede its boundary: the start of a line cut by
// stopCut or stopCR, else none.
func (c chunk) before() []byte {
	if c.hit.cut() {
		return c.b[:c.hit.at]
	}
	return nil
}

// setStop records the boundary that ended the current stream: the chunk from the boundary on.
func (s *splitter) setStop(c chunk) {
	s.stop = c.hit
	if c.hit.cut() {
		c.b = c.b[c.hit.at:]
	}
	s.stopBuf = c
}

// writeStopLine writes the pending boundary line to the skeleton, with the rest of the line when
// it is longer than one chunk, and clears s.stop. After a cut (stopCut, stopCR) only the chunk's
// rest is written; the caller copies what follows.
func (s *splitter) writeStopLine() error {
	c := s.stopBuf
	cut := s.stop.cut()
	s.stop, s.stopBuf = hit{}, chunk{}
	s.skel.Write(c.b)
	for !cut && c.kind == chunkPartial {
		var err error
		c, err = s.next()
		if errors.Is(err, io.EOF) {
			s.eof = true
			return nil
		}
		if err != nil {
			return err
		}
		s.skel.Write(c.b)
	}
	return nil
}

// passRest copies the rest of the input to the skeleton unsplit and ends the walk.
func (s *splitter) passRest() error {
	s.done = true
	s.skel.Write(s.stopBuf.b) // a chunk read but not written yet, if any
	s.stop, s.stopBuf = hit{}, chunk{}
	for {
		c, err := s.next()
		if errors.Is(err, io.EOF) {
			s.eof = true
			return nil
		}
		if err != nil {
			return err
		}
		s.skel.Write(c.b)
	}
}

// opaque keeps the body of an entity in the skeleton without looking inside, up to the end of
// its stream.
func (s *splitter) opaque(h *header, reason string) error {
	s.skel.Write(h.blank)
	n, err := s.copyUntilStop()
	if err == nil && n > s.opt.Threshold {
		s.warn(WarnNotSplit, false, "%s; %d bytes kept in the skeleton", reason, n)
	}
	return err
}

// leaf reads the body of a leaf entity: kept in the skeleton when it is at most Threshold
// bytes, spooled otherwise.
//
// A body is not spooled while it lies in the first 4 KiB of an open part (see stopCut): there,
// enmime may end the part mid-line, and removing the body would move other bytes into that window
// and change where it does. So a body that ends inside such a window is kept, and the decision
// on a longer one waits until the window is passed (which takes more than Threshold bytes only
// when Threshold is below 4 KiB).
func (s *splitter) leaf(h *header, id, mtype string) error {
	br := &bodyReader{s: s, end: -1}
	s.body.Reset()
	// Read a first piece, then, for a body that goes on, size the buffer once rather than let it
	// double its way past the threshold.
	limit := min(s.opt.Threshold+1, 64<<10)
	for {
		if _, err := s.body.ReadFrom(io.LimitReader(br, limit-int64(s.body.Len()))); err != nil {
			return err
		}
		if br.exhausted() {
			break
		}
		if limit < s.opt.Threshold+1 {
			limit = s.opt.Threshold + 1
			s.body.Grow(int(min(limit, 16<<20)) - s.body.Len() + bytes.MinRead) // a huge threshold is not a size
			continue
		}
		if !s.windowOpen(s.off) {
			break
		}
		limit = int64(s.body.Len()) + partStartWindow
	}
	if br.exhausted() && (int64(s.body.Len()) <= s.opt.Threshold || br.end >= 0 && s.windowOpen(br.end)) {
		s.skel.Write(h.blank)
		s.skel.Write(s.body.Bytes())
		s.skel.Write(br.held())
		return nil
	}
	if s.opt.Keep != nil && s.opt.Keep(mtype) {
		s.skel.Write(h.blank)
		s.skel.Write(s.body.Bytes())
		if _, err := io.Copy(&s.skel, readerOnly{br}); err != nil {
			return err
		}
		if br.err != nil {
			return br.err
		}
		s.skel.Write(br.held())
		return nil
	}
	return s.spool(h, id, mtype, br)
}

// header is what Split needs from a header block, read with enmime's rules (ReadHeader).
type header struct {
	ctype, cte string
	hasCT      bool
	hasCTE     bool
	bad        bool    // enmime cannot read the block (its first line is not a field)
	tooLong    bool    // a Content-Type or Content-Transfer-Encoding longer than MaxLineLength
	blank      []byte  // the empty line that ended the block; nil when its stream ended first
	started    bool    // a field line was accepted
	cur        *string // the field that continuation lines extend, if Split reads it
}

// unreadable says why Split must not look inside the entity, or "".
func (h *header) unreadable() string {
	switch {
	case h.bad:
		return "header block not readable"
	case h.tooLong:
		return "Content-Type or Content-Transfer-Encoding too long"
	}
	return ""
}

// mediaType parses the Content-Type as package mime has enmime parse it.
func (h *header) mediaType() (string, map[string]string, bool) {
	if !h.hasCT {
		return "", nil, true
	}
	mtype, params, _, err := mediatype.ParseWithOptions(h.ctype, mediatype.ParseOptions{StripMediaTypeInvalidCharacters: true})
	if err != nil {
		return "", nil, false
	}
	return mtype, params, true
}

// header reads a header block, writing it to the skeleton except for the empty line that ends
// it (kept in h.blank for the caller, which may insert a field before it). The block also ends at
// a boundary line (left in s.stop) or the end of the input; h.blank is nil then.
func (s *splitter) header() (*header, error) {
	h := &header{}
	s.hline = s.hline[:0]
	over := false // the line is longer than MaxLineLength: only its start is in hline
	add := func(b []byte) {
		if len(s.hline)+len(b) <= s.opt.MaxLineLength {
			s.hline = append(s.hline, b...)
		} else {
			over = true
		}
	}
	for {
		c, err := s.next()
		if errors.Is(err, io.EOF) {
			s.eof = true
			s.headerLine(h, over)
			return h, nil
		}
		if err != nil {
			return nil, err
		}
		if c.start {
			if c.hit.ok && !c.hit.cut() || c.kind == chunkLine && len(c.b) == eolLen(c.b) {
				// A boundary line or the empty line: the block ends with the line before.
				s.headerLine(h, over)
				if c.hit.ok {
					s.setStop(c)
				} else {
					h.blank = append([]byte(nil), c.b...)
				}
				return h, nil
			}
			s.headerLine(h, over)
			s.hline, over = s.hline[:0], false
		}
		if c.hit.ok { // cut in the middle of the line: the block ends there
			s.skel.Write(c.before())
			add(c.before())
			s.setStop(c)
			s.headerLine(h, over)
			return h, nil
		}
		s.skel.Write(c.b)
		add(c.b)
	}
}

// headerLine applies enmime's ReadHeader rules to one line of a header block (s.hline, with its
// line break): a line starting with white space continues the current field; a line starting
// with a colon or with a name holding invalid bytes is dropped; a line with a colon starts a
// field; a line without one continues the current field. The first line that is kept must start
// a field, or enmime fails to read the block.
func (s *splitter) headerLine(h *header, over bool) {
	line := trimEOL(s.hline)
	if len(line) == 0 {
		return
	}
	if line[0] == ' ' || line[0] == '\t' || line[0] == '\r' || line[0] == '\n' {
		if !h.started {
			h.bad = true
		}
		h.extend(" "+string(trimASCIISpace(line)), over)
		return
	}
	colon := bytes.IndexByte(line, ':')
	switch {
	case colon == 0:
		return
	case colon > 0:
		name := line[:colon]
		if colon > 0 && line[colon-1] == ' ' {
			name = line[:colon-1] // enmime drops one blank before the colon
		}
		for _, c := range name {
			if c != ' ' && !fieldByte(c) {
				return
			}
		}
		h.started = true
		h.cur = nil
		if bytes.IndexByte(name, ' ') >= 0 {
			return // not canonicalised, so never "Content-Type"
		}
		value := string(trimASCIISpace(line[colon+1:]))
		switch {
		case !h.hasCT && strings.EqualFold(string(name), "Content-Type"):
			h.hasCT, h.ctype, h.cur = true, value, &h.ctype
		case !h.hasCTE && strings.EqualFold(string(name), "Content-Transfer-Encoding"):
			h.hasCTE, h.cte, h.cur = true, value, &h.cte
		default:
			return
		}
		if over {
			h.tooLong = true
		}
	default:
		if !h.started {
			h.bad = true
		}
		h.extend(" "+string(line), over)
	}
}

// extend appends a continuation to the current field when it is one Split reads.
func (h *header) extend(s string, over bool) {
	if h.cur == nil {
		return
	}
	if over {
		h.tooLong = true
	}
	*h.cur = strings.Trim(*h.cur+s, " \t")
}

// fieldByte is enmime's ValidEmailHeaderFieldByte: printable ASCII other than ':'.
func fieldByte(c byte) bool { return c >= 33 && c <= 126 && c != ':' }

func trimASCIISpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\r' || b[0] == '\n') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t' || b[len(b)-1] == '\r' || b[len(b)-1] == '\n') {
		b = b[:len(b)-1]
	}
	return b
}
