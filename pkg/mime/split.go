package mime

import (
	"bytes"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jhillyerd/enmime/v2"
)

// This file reads a multipart message into enmime's part tree without enmime's boundary reader.
//
// enmime reads a multipart body through one boundary reader per nesting level, each a
// bufio.Reader over the one above that moves every byte through Peek, ReadByte and a
// bytes.Buffer: a leaf three levels down is copied byte by byte three times before its
// transfer encoding is even looked at. That was a quarter of the parser's time on the corpus.
// split finds the same entities with byte searches over the input held in memory, hands enmime
// each leaf entity (header and body, which it reads without a boundary reader) and each
// container's header block, and links the parts as enmime's parseParts does (PartID, Parent,
// FirstChild, NextSibling, Epilogue, the errors it records on the containers), so the tree is
// the one enmime.Parser.ReadParts builds, and everything downstream works on it unchanged.
//
// Finding "the same entities" means following the boundary reader's rules, quirks included
// (boundary.go in enmime): a delimiter is looked for at every CR and LF of a part, and at every
// byte of its first 4096 bytes; the look-ahead is len("\n--"+boundary)+2 bytes past the line
// break, and a look-ahead cut by the end of the stream marks the container unclosed; lines
// between parts are read whole. Whatever split is not sure to read as enmime does (a part cut
// by a delimiter found mid-line, a missing separator line after a part, a boundary that
// overlaps itself or is too long, a container of an unusual type, a leaf enmime refuses) makes
// it give up, and the message is read by enmime itself.

// Boundary reader constants of enmime (boundary.go, bufio).
const (
	// splitStartRegion is how many bytes of a part enmime's first Read (bufio's 4096-byte
	// fill) scans with the atPartStart rule: a delimiter is looked for at every byte, not only
	// after a line break.
	splitStartRegion = 4096
	// splitMaxBoundary bounds the boundaries split handles; enmime peeks len(boundary)+6 bytes
	// into a 4096-byte bufio buffer, and RFC 2046 allows 70.
	splitMaxBoundary = 200
)

// readParts returns enmime's part tree of input, the tree enmime's ReadParts builds, but for
// the header of the root part, which holds only the fields MIME reading depends on when its
// header block is plain (see mimeHeader).
func (p *Parser) readParts(r *run, input []byte, heads []entityHead) (*enmime.Part, error) {
	if root, ok := p.split(r, input, heads); ok {
		return root, nil
	}
	if head, body, ok := mimeHeader(input); ok {
		return r.readEnmimeJoined(head, input[body:])
	}
	return r.readEnmime(input)
}

// mimeHeader returns the header block at the start of b (and the offset of the body) without
// the fields that MIME reading does not depend on. A message's header block is mostly trace
// and authentication fields (Received, DKIM-Signature, ARC-*), and enmime's header reader
// copies and maps every one of them, for each message and each nested message: that was a
// fifth of the parser's time on bounces, for fields nobody reads from enmime's tree (the
// message's fields come from scanHeaders). What is kept: Content-*, MIME-Version, and the
// fields this package marks parts with (depthMarker, SpoolHeader), each with its continuation
// lines. ok is false unless every line of the block is plain for enmime (a field name of
// letters, digits, '-' and '_' right before its colon, or a continuation line starting with a
// space or tab after a field): then enmime reads each kept field as it would in the whole
// block and reports no problem in either, so its part is the same but for the dropped fields.
func mimeHeader(b []byte) (head []byte, body int, ok bool) {
	keep := false
	pos := 0
	for pos < len(b) {
		end := len(b)
		if i := bytes.IndexByte(b[pos:], '\n'); i >= 0 {
			end = pos + i + 1
		}
		line := b[pos:end]
		text := bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
		switch {
		case len(text) == 0:
			if len(line) > 0 && line[0] == '\r' && len(line) == 1 {
				return nil, 0, false // a lone CR at the end: not a blank line to bufio
			}
			return append(head, line...), end, true
		case text[0] == ' ' || text[0] == '\t':
			if pos == 0 {
				return nil, 0, false
			}
		default:
			colon := 0
			for colon < len(text) && plainNameByte(text[colon]) {
				colon++
			}
			if colon == 0 || colon == len(text) || text[colon] != ':' {
				return nil, 0, false
			}
			name := text[:colon]
			keep = hasPrefixFold(name, "Content-") || bytes.EqualFold(name, []byte("MIME-Version")) ||
				bytes.EqualFold(name, []byte(depthMarker)) || bytes.EqualFold(name, []byte(SpoolHeader))
		}
		if bytes.IndexByte(text, '\r') >= 0 {
			return nil, 0, false // a CR inside a line
		}
		if keep {
			head = append(head, line...)
		}
		pos = end
	}
	return head, len(b), true
}

func plainNameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && bytes.EqualFold(b[:len(prefix)], []byte(prefix))
}

// splitter holds the input of one split.
type splitter struct {
	p   *Parser
	run *run
	in  []byte
	// heads are prescan's header summaries of the entities it found in in, by offset.
	heads []entityHead
}

// header returns the header summary of the entity s.in[start:end]: prescan's, when it read an
// entity there whose header block ends within end, else a new one.
func (s *splitter) header(start, end int) headerSummary {
	i := sort.Search(len(s.heads), func(i int) bool { return s.heads[i].start >= start })
	if i < len(s.heads) && s.heads[i].start == start {
		if h := s.heads[i].h; h.closed && start+h.body <= end {
			return h
		}
	}
	return summarizeHeaders(s.in[start:end])
}

// split reads a multipart message as described at the top of this file. ok is false when the
// message is not multipart (enmime reads a single part without a boundary reader anyway) or
// when split is not sure to build enmime's tree.
func (p *Parser) split(r *run, in []byte, heads []entityHead) (root *enmime.Part, ok bool) {
	s := &splitter{p: p, run: r, in: in, heads: heads}
	h := s.header(0, len(in))
	ct, body := h.ct, h.body
	if ct == "" {
		return nil, false
	}
	mtype, params, _, err := r.parseMediaType(ct)
	if err != nil || !strings.HasPrefix(mtype, "multipart/") || params["boundary"] == "" {
		return nil, false
	}
	return s.container(0, body, len(in), "0", nil, mtype, params["boundary"], 0)
}

// container reads the multipart entity s.in[start:end] whose header block ends at body, as
// enmime's parseParts reads it, and returns its part with the children attached. parent is nil
// for the message itself.
func (s *splitter) container(start, body, end int, id string, parent *enmime.Part, mtype, boundary string, depth int) (*enmime.Part, bool) {
	if depth > s.p.cfg.limits.MaxDepth+1 || !splittable(boundary) {
		return nil, false
	}
	head := s.in[start:body]
	if parent == nil {
		if h, _, ok := mimeHeader(head); ok {
			head = h
		}
	}
	part, ok := s.run.containerPart(head, mtype, boundary)
	if !ok {
		var err error
		part, err = s.run.readEnmime(head)
		if err != nil || part.FirstChild != nil || part.ContentType != mtype || part.Boundary != boundary {
			return nil, false
		}
	}
	part.PartID, part.Parent = id, parent
	c := boundaryScan{in: s.in, end: end, prefix: []byte("--" + boundary)}
	c.final = []byte("--" + boundary + "--")

	// One iteration per call of enmime's boundaryReader.Next.
	pos := body
	partsRead := 0
	unbounded := false
	var last *enmime.Part
	for index := 1; ; index++ {
		next, finished := false, false
		for pos < end {
			lineEnd, eof := end, true
			if i := bytes.IndexByte(s.in[pos:end], '\n'); i >= 0 {
				lineEnd, eof = pos+i+1, false
			}
			line := s.in[pos:lineEnd]
			pos = lineEnd
			if line[0] == '\r' || line[0] == '\n' {
				continue // a blank line
			}
			if bytes.Contains(line, c.final) {
				finished = true
				break
			}
			if !eof && c.isDelimiter(line) {
				partsRead++
				next = true
				break
			}
			if eof {
				break
			}
			if partsRead == 0 {
				continue // preamble
			}
			// enmime: errNoBoundaryTerminator, which ends the container with an error.
			return nil, false
		}
		if unbounded {
			addPartError(part, &enmime.Error{
				Name:   enmime.ErrorMissingBoundary,
				Detail: "Boundary " + strconv.Quote(boundary) + " was not closed correctly",
			})
		}
		if !next {
			if finished {
				break
			}
			pos = end
			break
		}
		stop, ub, ok := c.part(pos)
		if !ok {
			return nil, false
		}
		unbounded = unbounded || ub
		childID := strconv.Itoa(index)
		if parent != nil {
			childID = part.PartID + "." + childID
		}
		child, ok := s.entity(pos, stop, childID, part, depth+1)
		if !ok {
			return nil, false
		}
		switch {
		case child == nil: // dropped by enmime
		case last == nil:
			part.FirstChild = child
		default:
			last.NextSibling = child
		}
		if child != nil {
			last = child
		}
		pos = stop
	}
	part.Epilogue = append(make([]byte, 0, end-pos), s.in[pos:end]...)
	if parent != nil {
		part.PartID += ".0"
	}
	return part, true
}

// entity reads the part s.in[start:end], a child of parent, as enmime's parseParts does. The
// part is nil when enmime drops it.
func (s *splitter) entity(start, end int, id string, parent *enmime.Part, depth int) (*enmime.Part, bool) {
	b := s.in[start:end]
	h := s.header(start, end)
	ct, body := h.ct, h.body
	if ct != "" {
		mtype, params, _, err := s.run.parseMediaType(ct)
		if err != nil {
			return s.unreadable(b[:body], parent)
		}
		if bnd := params["boundary"]; bnd != "" && mtype != "text/plain" && mtype != "text/html" {
			if !strings.HasPrefix(mtype, "multipart/") {
				return nil, false // a container to enmime, which split reads only when multipart
			}
			return s.container(start, start+body, end, id, parent, mtype, bnd, depth)
		}
	}
	leaf, err := s.run.readEnmime(b)
	if err != nil || leaf.FirstChild != nil {
		return nil, false
	}
	typed := leaf.Header.Get("Content-Type") != ""
	if typed != (ct != "") {
		return nil, false
	}
	if leaf.Boundary != "" {
		if leaf.ContentType != "text/plain" && leaf.ContentType != "text/html" {
			return nil, false
		}
		addPartError(parent, &enmime.Error{
			Name: enmime.ErrorDataHasBoundary, Detail: "content is text or data but has a boundary marker", Severe: true,
		})
	}
	switch {
	case !typed:
		if !untyped(leaf, id) {
			return nil, false
		}
	case leaf.ContentType == "":
		// A Content-Type without a type ("; name=x"): enmime's warning named the part "0".
		for _, e := range leaf.Errors {
			if e.Name == enmime.ErrorMissingContentType && e.Detail == "content-type is empty for part id: 0" {
				e.Detail = "content-type is empty for part id: " + id
			}
		}
	}
	leaf.PartID, leaf.Parent = id, parent
	return leaf, true
}

// unreadable handles a part whose header enmime cannot read (a Content-Type it cannot parse):
// enmime drops the part and records why on its parent. head is the part's header block; split
// gives up unless enmime refuses it as it is.
func (s *splitter) unreadable(head []byte, parent *enmime.Part) (*enmime.Part, bool) {
	_, err := s.run.readEnmime(head)
	if err == nil {
		return nil, false
	}
	addPartError(parent, &enmime.Error{Name: enmime.ErrorMalformedChildPart, Detail: "read header: " + err.Error(), Severe: true})
	return nil, true
}

// untyped turns the part enmime made of a leaf without a Content-Type field read as a whole
// message (text/plain by default, with our undeclared charset, which enmime fails to convert)
// into the part it makes of the same leaf inside a multipart: no type, and with it no
// disposition, file name, charset or content id (enmime stops reading the header there), and
// its two missing-type warnings. The content is the same: enmime converts neither.
func untyped(p *enmime.Part, id string) bool {
	if p.ContentType != "text/plain" || len(p.Errors) >= 14 {
		return false // near MaxStoredPartErrors, which would cut the two lists differently
	}
	errs := make([]*enmime.Error, 0, len(p.Errors)+2)
	i := 0
	for i < len(p.Errors) && p.Errors[i].Name == enmime.ErrorMalformedHeader {
		i++ // the header's own problems come first
	}
	errs = append(errs, p.Errors[:i]...)
	errs = append(errs, &enmime.Error{Name: enmime.ErrorMissingContentType, Detail: "MIME parts should have a Content-Type header"})
	for _, e := range p.Errors[i:] {
		if e.Name == enmime.ErrorCharsetConversion && strings.Contains(e.Detail, undeclaredCharset) {
			continue
		}
		errs = append(errs, e)
	}
	errs = append(errs, &enmime.Error{Name: enmime.ErrorMissingContentType, Detail: "content-type is empty for part id: " + id})
	p.Errors = errs
	p.ContentType, p.Charset, p.Disposition, p.FileName, p.ContentID = "", "", "", "", ""
	p.FileModDate = time.Time{}
	return true
}

// addPartError records e on p as enmime does, within the parser's MaxStoredPartErrors.
func addPartError(p *enmime.Part, e *enmime.Error) {
	if len(p.Errors) < maxStoredPartErrors {
		p.Errors = append(p.Errors, e)
	}
}

// splittable reports whether split reads multiparts with this boundary: not too long, and
// "--"+boundary does not overlap itself by all but one or two bytes, so that two delimiters
// are never both at the start of enmime's look-ahead window (it tests the first one only).
func splittable(boundary string) bool {
	if boundary == "" || len(boundary) > splitMaxBoundary {
		return false
	}
	prefix := "--" + boundary
	for k := 1; k <= 2; k++ {
		if prefix[k:] == prefix[:len(prefix)-k] {
			return false
		}
	}
	return true
}

// boundaryScan finds the end of the parts of one multipart body as enmime's boundaryReader.Read
// does. The stream it reads ends at end: the end of the message, or of the enclosing part.
type boundaryScan struct {
	in     []byte
	end    int
	prefix []byte // "--" + boundary
	final  []byte // prefix + "--"
}

// part returns the end of the part that starts at start: where enmime's Read stops on a
// delimiter, or the end of the stream. unbounded reports that a look-ahead reached the end of
// the stream (enmime then records a missing boundary). ok is false for a stop enmime would not
// keep to (see the top of the file).
func (c *boundaryScan) part(start int) (stop int, unbounded, ok bool) {
	stop = c.end
	pos, next := start, start // next: the first offset not yet tested
search:
	for pos < c.end {
		i := bytes.Index(c.in[pos:c.end], c.prefix)
		if i < 0 {
			break
		}
		at := pos + i
		// enmime finds a delimiter at offset 0 or 1 of a window that starts 0, 1 or 2 bytes
		// after the byte it looks from.
		for q := max(next, at-3); q <= at; q++ {
			next = q + 1
			if hit, _ := c.detect(start, q); hit {
				stop = q
				break search
			}
		}
		pos = at + 1
	}
	if stop < c.end && stop > start && c.in[stop] != '\r' && c.in[stop] != '\n' {
		// Found mid-line in the first bytes of the part: enmime's first Read stops there, but
		// its next Read no longer looks there and reads on.
		return 0, false, false
	}
	for q := max(start, c.end-len(c.prefix)-4); q < c.end && q <= stop; q++ {
		if _, eof := c.detect(start, q); eof {
			unbounded = true
		}
	}
	return stop, unbounded, true
}

// detect reports whether enmime's Read, reading the part that starts at start and standing at
// offset q, finds a delimiter or the close delimiter there; eof reports that its look-ahead
// reached the end of the stream instead.
func (c *boundaryScan) detect(start, q int) (hit, eof bool) {
	var pad int
	switch c.in[q] {
	case '\r':
		pad = 2
	case '\n':
		pad = 1
	default:
		if q-start >= splitStartRegion {
			return false, false
		}
	}
	n := len(c.prefix) + pad + 2
	if q+n > c.end {
		return false, true
	}
	peek := c.in[q : q+n]
	if bytes.HasPrefix(peek, []byte("\n\n")) || bytes.HasPrefix(peek, []byte("\n\r")) ||
		bytes.HasPrefix(peek, []byte("\r\n\r")) || bytes.HasPrefix(peek, []byte("\r\n\n")) {
		return false, false // a blank line: the delimiter's line break is the next one
	}
	w := peek[pad:]
	return c.isDelimiter(w) || bytes.Equal(w, c.final), false
}

// isDelimiter is enmime's test for a delimiter line: the first "--boundary" in b is followed
// by white space (unicode.IsSpace of the byte).
func (c *boundaryScan) isDelimiter(b []byte) bool {
	i := bytes.Index(b, c.prefix)
	if i < 0 || i+len(c.prefix) >= len(b) {
		return false
	}
	switch b[i+len(c.prefix)] {
	case '\t', '\n', '\v', '\f', '\r', ' ', 0x85, 0xA0:
		return true
	}
	return false
}

// eachPart calls fn for root and every part below it in enmime's depth-first order, as
// root.DepthMatchAll does with a matcher that never matches, without the slice it builds.
func eachPart(root *enmime.Part, fn func(*enmime.Part)) {
	p := root
	for {
		fn(p)
		if c := p.FirstChild; c != nil {
			p = c
			continue
		}
		for p.NextSibling == nil {
			if p == root {
				return
			}
			p = p.Parent
		}
		p = p.NextSibling
	}
}
