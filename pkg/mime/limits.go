package mime

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/jhillyerd/enmime/v2"
)

// Limits bound the work and memory one message may cost (MIME-bomb protection). A message that
// exceeds a limit is read up to the limit and gets [StatusPartial] and a severe warning.
type Limits struct {
	// MaxParts is the most MIME entities read, the root and multipart containers included.
	// Default 1000; must be at least 1.
	MaxParts int `env:"MAX_PARTS" default:"1000" usage:"most MIME parts read per message"`
	// MaxDepth is the deepest multipart nesting read; the root is level 0. The content of a
	// container whose children would be deeper is dropped (the container is listed as an empty
	// attachment of its type). Default 32; must be at least 1.
	MaxDepth int `env:"MAX_DEPTH" default:"32" usage:"deepest multipart nesting read"`
	// MaxDecodedSize is the most decoded content, in bytes, summed over all leaf parts.
	// Default 64 MiB; must be at least 1.
	MaxDecodedSize int64 `env:"MAX_DECODED_SIZE" default:"67108864" usage:"most decoded MIME content per message, bytes"`
	// MaxHeaderFields is the most fields read from one header block (the message's or a
	// part's); the fields after it are dropped. Default 1000; must be at least 1.
	MaxHeaderFields int `env:"MAX_HEADER_FIELDS" default:"1000" usage:"most header fields read per header block"`
	// MaxHeaderBytes is the largest header block read (the message's or a part's), in bytes;
	// the fields that end past it are dropped. Default 1 MiB; must be at least 1.
	MaxHeaderBytes int `env:"MAX_HEADER_BYTES" default:"1048576" usage:"largest header block read, bytes"`
	// MaxNestedDepth is how deep message/rfc822 parts are described as nested messages (a
	// forwarded message inside a forwarded message is level 2). Deeper ones stay plain
	// attachments. Default 3; must be at least 1.
	MaxNestedDepth int `env:"MAX_NESTED_DEPTH" default:"3" usage:"how deep attached messages are described as nested messages"`
}

// Default limits.
const (
	DefaultMaxParts        = 1000
	DefaultMaxDepth        = 32
	DefaultMaxDecodedSize  = 64 << 20
	DefaultMaxHeaderFields = 1000
	DefaultMaxHeaderBytes  = 1 << 20
	DefaultMaxNestedDepth  = 3
)

// DefaultLimits returns the default limits.
func DefaultLimits() Limits {
	return Limits{
		MaxParts: DefaultMaxParts, MaxDepth: DefaultMaxDepth, MaxDecodedSize: DefaultMaxDecodedSize,
		MaxHeaderFields: DefaultMaxHeaderFields, MaxHeaderBytes: DefaultMaxHeaderBytes, MaxNestedDepth: DefaultMaxNestedDepth,
	}
}

// Validate reports limits that cannot work, one sentence each.
func (l Limits) Validate() error {
	var errs []error
	if l.MaxParts < 1 {
		errs = append(errs, fmt.Errorf("max parts must be at least 1, got %d", l.MaxParts))
	}
	if l.MaxDepth < 1 {
		errs = append(errs, fmt.Errorf("max depth must be at least 1, got %d", l.MaxDepth))
	}
	if l.MaxDecodedSize < 1 {
		errs = append(errs, fmt.Errorf("max decoded size must be at least 1 byte, got %d", l.MaxDecodedSize))
	}
	if l.MaxHeaderFields < 1 {
		errs = append(errs, fmt.Errorf("max header fields must be at least 1, got %d", l.MaxHeaderFields))
	}
	if l.MaxHeaderBytes < 1 {
		errs = append(errs, fmt.Errorf("max header bytes must be at least 1, got %d", l.MaxHeaderBytes))
	}
	if l.MaxNestedDepth < 1 {
		errs = append(errs, fmt.Errorf("max nested depth must be at least 1, got %d", l.MaxNestedDepth))
	}
	return errors.Join(errs...)
}

// withDefaults returns l with its zero fields set to the defaults.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxParts == 0 {
		l.MaxParts = d.MaxParts
	}
	if l.MaxDepth == 0 {
		l.MaxDepth = d.MaxDepth
	}
	if l.MaxDecodedSize == 0 {
		l.MaxDecodedSize = d.MaxDecodedSize
	}
	if l.MaxHeaderFields == 0 {
		l.MaxHeaderFields = d.MaxHeaderFields
	}
	if l.MaxHeaderBytes == 0 {
		l.MaxHeaderBytes = d.MaxHeaderBytes
	}
	if l.MaxNestedDepth == 0 {
		l.MaxNestedDepth = d.MaxNestedDepth
	}
	return l
}

// cutHeaders applies the header limits to the fields of a header block that ends at offset
// body: at most MaxHeaderFields are kept, and only those that end within MaxHeaderBytes. The
// first field is always kept (cut to MaxHeaderBytes) so that a message with one giant header
// is still read. It returns the fields kept, the offset where the dropped ones start (body when
// none are), and a warning when something was dropped.
func (l Limits) cutHeaders(fields []field, body int) ([]field, int, *Warning) {
	if len(fields) <= l.MaxHeaderFields && body <= l.MaxHeaderBytes {
		return fields, body, nil
	}
	if len(fields) > l.MaxHeaderFields {
		return fields[:l.MaxHeaderFields], fields[l.MaxHeaderFields].off, &Warning{
			Name: WarnLimitHeaderFields, Severe: true,
			Detail: fmt.Sprintf("header block has %d fields, more than %d; the rest were dropped", len(fields), l.MaxHeaderFields),
		}
	}
	keep := 0
	for keep < len(fields) {
		end := body
		if keep+1 < len(fields) {
			end = fields[keep+1].off
		}
		if end > l.MaxHeaderBytes {
			break
		}
		keep++
	}
	w := &Warning{
		Name: WarnLimitHeaderBytes, Severe: true,
		Detail: fmt.Sprintf("header block of %d bytes is larger than %d; the fields past the limit were dropped", body, l.MaxHeaderBytes),
	}
	if keep == 0 {
		first := fields[0]
		if len(first.raw) > l.MaxHeaderBytes {
			first.raw = first.raw[:l.MaxHeaderBytes]
		}
		end := body
		if len(fields) > 1 {
			end = fields[1].off
		}
		return []field{first}, end, w
	}
	if keep == len(fields) {
		return fields, body, w // only the blank line crossed the limit
	}
	return fields[:keep], fields[keep].off, w
}

// depthMarker replaces the name "Content-Type" (same length, so offsets stay valid) of a
// container that is too deep: enmime then reads it as one (empty) leaf without looking inside.
const depthMarker = "X-Mime-Depth"

// prescan walks the MIME structure of b with cheap byte searches before enmime sees it, and
// decides where enmime must stop: the offset to cut the input at (for too many parts or too
// much content) and the containers to neutralize (too deep). It follows enmime's rules for
// headers, nesting and boundaries closely enough that enmime never reads much beyond a limit;
// the exact limits are enforced again on the parsed tree by enforce.
type prescan struct {
	lim      Limits
	media    func(string) (string, map[string]string, []string, error) // parseMediaType
	b        []byte
	parts    int
	decoded  int64
	cut      int      // offset to cut b at; -1 for none
	deep     []int    // offsets of Content-Type names to replace by depthMarker
	drops    [][2]int // bodies of too-deep containers, removed from the input, in order
	blanks   [][2]int // text after the end of base64 data, blanked (see base64Junk)
	warnings []Warning
	heads    []entityHead // the header of every entity scanned, in order
}

// entityHead is the header summary of the entity that starts at offset start.
type entityHead struct {
	start int
	h     headerSummary
}

// headers returns the header summaries of the entities prescan read, for split to reuse, when
// apply leaves every header where it was (blanks are in bodies); nil otherwise.
func (s *prescan) headers() []entityHead {
	if s.cut >= 0 || len(s.deep) > 0 || len(s.drops) > 0 {
		return nil
	}
	return s.heads
}

// apply returns the input enmime should read: b itself when no limit was hit.
func (s *prescan) apply() []byte {
	if s.cut < 0 && len(s.deep) == 0 && len(s.blanks) == 0 {
		return s.b
	}
	end := len(s.b)
	if s.cut >= 0 {
		end = s.cut
	}
	out := bytes.Clone(s.b[:end])
	for _, off := range s.deep {
		if off+len(depthMarker) <= len(out) {
			copy(out[off:], depthMarker)
		}
	}
	for _, r := range s.blanks {
		blank(out, r[0], r[1])
	}
	if len(s.drops) == 0 {
		return out
	}
	// The body of a too-deep container is removed rather than kept: reading it through every
	// level of enmime's nested boundary readers costs its size times the depth, for bytes
	// nobody will parse.
	kept := out[:0:0]
	pos := 0
	for _, d := range s.drops {
		from, to := min(d[0], len(out)), min(d[1], len(out))
		if from < pos {
			continue
		}
		kept = append(kept, out[pos:from]...)
		pos = to
	}
	return append(kept, out[pos:]...)
}

func runPrescan(b []byte, lim Limits, media func(string) (string, map[string]string, []string, error)) *prescan {
	s := &prescan{lim: lim, media: media, b: b, cut: -1}
	s.entity(0, len(b), 0, 0)
	return s
}

// entity scans the MIME entity b[start:end] at the given depth. delim is the offset of the
// delimiter line that introduced it (where the input is cut if this entity is one too many).
// It returns false when a limit stopped the scan.
func (s *prescan) entity(start, end, depth, delim int) bool {
	s.parts++
	if s.parts > s.lim.MaxParts {
		s.cut = delim
		s.warnings = append(s.warnings, Warning{
			Name: WarnLimitParts, Severe: true,
			Detail: fmt.Sprintf("message has more than %d MIME parts; the rest was not read", s.lim.MaxParts),
		})
		return false
	}
	h := summarizeHeaders(s.b[start:end])
	s.heads = append(s.heads, entityHead{start: start, h: h})
	bodyRel := h.body
	body := start + bodyRel
	if depth > 0 && (h.fields > s.lim.MaxHeaderFields || bodyRel > s.lim.MaxHeaderBytes) {
		// A part's header block is read whole by enmime, so a too-large one ends the reading
		// here, as one part too many does. (The message's own block is cut by Parse instead.)
		s.cut = delim
		fields, _, _ := scanHeaders(s.b[start:end])
		_, _, w := s.lim.cutHeaders(fields, bodyRel)
		w.Detail = "MIME part " + w.Detail + "; the message was read up to that part"
		s.warnings = append(s.warnings, *w)
		return false
	}
	ct := h.ct
	mtype, params, _, err := s.media(ct)
	boundary := ""
	if err == nil {
		boundary = params["boundary"]
	}
	nested := boundary != "" && mtype != "text/plain" && mtype != "text/html"
	if depth == 0 {
		nested = boundary != "" && strings.HasPrefix(mtype, "multipart/")
	}
	if !nested {
		return s.leaf(body, end, h.cte)
	}
	if depth+1 > s.lim.MaxDepth {
		fields, _, _ := scanHeaders(s.b[start:end])
		for _, f := range fields {
			if strings.EqualFold(f.name, "Content-Type") {
				s.deep = append(s.deep, start+f.off)
			}
		}
		s.drops = append(s.drops, [2]int{body, end})
		s.warnings = append(s.warnings, Warning{
			Name: WarnLimitDepth, Severe: true,
			Detail: fmt.Sprintf("MIME nesting deeper than %d levels; the content of a %s container was dropped", s.lim.MaxDepth, mtype),
		})
		return true
	}
	return s.children(body, end, depth+1, "--"+boundary)
}

// children scans the parts of a multipart body b[start:end] delimited by prefix ("--boundary").
func (s *prescan) children(start, end, depth int, prefix string) bool {
	pos := start
	partStart, partDelim := -1, 0
	first := true
	delim := []byte(prefix)
	for pos < end {
		i := bytes.Index(s.b[pos:end], delim)
		if i < 0 {
			break
		}
		at := pos + i
		after := at + len(prefix)
		lineStart := at == start || s.b[at-1] == '\n'
		// Like enmime, the first delimiter may sit anywhere in a preamble line; later ones
		// must start a line.
		if !lineStart && !first {
			pos = after
			continue
		}
		terminator := bytes.HasPrefix(s.b[after:end], []byte("--"))
		if !terminator && (after >= end || !isSpace(s.b[after])) {
			pos = after
			continue
		}
		lineEnd := bytes.IndexByte(s.b[after:end], '\n')
		next := end
		if lineEnd >= 0 {
			next = after + lineEnd + 1
		}
		if partStart >= 0 {
			if !s.entity(partStart, trimNewline(s.b, partStart, lineBegin(s.b, at)), depth, partDelim) {
				return false
			}
		}
		if terminator {
			return true
		}
		if lineEnd < 0 {
			return true // a delimiter at the very end opens no part (enmime: EOF)
		}
		first = false
		partStart, partDelim = next, lineBegin(s.b, at)
		pos = next
	}
	if partStart >= 0 {
		return s.entity(partStart, end, depth, partDelim)
	}
	return true
}

// leaf accounts for a leaf body b[start:end] and cuts the input where the decoded-size budget
// runs out.
func (s *prescan) leaf(start, end int, cte string) bool {
	n := int64(end - start)
	if n < 0 {
		n = 0
	}
	base64 := strings.EqualFold(strings.TrimSpace(cte), "base64")
	if base64 && end > start {
		if from, to, ok := base64Junk(s.b[start:end]); ok {
			s.blanks = append(s.blanks, [2]int{start + from, start + to})
			s.warnings = append(s.warnings, Warning{Name: WarnPartMalformed, Detail: "text after the end of the base64 data (its padding) was ignored"})
		}
	}
	if strings.EqualFold(strings.TrimSpace(cte), "quoted-printable") {
		if i := len(bytes.TrimRight(s.b[start:end], " \t")) - 1; i >= 0 && s.b[start+i] == '=' {
			// A soft line break ends the part, its line break being the delimiter's (HTML often
			// ends "</html>=" before the delimiter): enmime's QP cleaner keeps that '=' as text;
			// as a space it is trailing white space, which QP decoding drops.
			s.blanks = append(s.blanks, [2]int{start + i, start + i + 1})
		}
	}
	est := n
	if base64 {
		est = n * 3 / 4
	}
	if s.decoded+est <= s.lim.MaxDecodedSize {
		s.decoded += est
		return true
	}
	allow := s.lim.MaxDecodedSize - s.decoded
	if base64 {
		allow = allow * 4 / 3
	}
	s.cut = start + int(allow)
	s.warnings = append(s.warnings, Warning{
		Name: WarnLimitDecodedSize, Severe: true,
		Detail: fmt.Sprintf("decoded content exceeds %d bytes; the rest was not read", s.lim.MaxDecodedSize),
	})
	return false
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// lineBegin returns the offset of the start of the line holding offset i.
func lineBegin(b []byte, i int) int {
	if j := bytes.LastIndexByte(b[:i], '\n'); j >= 0 {
		return j + 1
	}
	return 0
}

// trimNewline returns the end of a part that runs to the delimiter line at end: the line break
// before a delimiter belongs to the delimiter (RFC 2046).
func trimNewline(b []byte, start, end int) int {
	if end > start && b[end-1] == '\n' {
		end--
		if end > start && b[end-1] == '\r' {
			end--
		}
	}
	return end
}

// enforce applies the limits to enmime's tree exactly: parts beyond MaxParts and levels beyond
// MaxDepth are detached, and content beyond MaxDecodedSize is truncated. It returns what was
// kept. prescan keeps enmime from reading far beyond a limit; enforce makes the limits hold
// whatever enmime made of the bytes.
func enforce(root *enmime.Part, lim Limits) (Stats, []Warning) {
	st := Stats{Parts: 1}
	var warns []Warning
	var walk func(p *enmime.Part, depth int) bool
	walk = func(p *enmime.Part, depth int) bool {
		st.Depth = max(st.Depth, depth)
		if p.FirstChild == nil {
			n := int64(len(p.Content))
			if st.DecodedSize+n > lim.MaxDecodedSize {
				p.Content = p.Content[:lim.MaxDecodedSize-st.DecodedSize]
				st.DecodedSize = lim.MaxDecodedSize
				warns = append(warns, Warning{
					Name: WarnLimitDecodedSize, Severe: true,
					Detail: fmt.Sprintf("decoded content exceeds %d bytes; the rest was dropped", lim.MaxDecodedSize),
				})
				return false
			}
			st.DecodedSize += n
			return true
		}
		if depth+1 > lim.MaxDepth {
			p.FirstChild = nil
			warns = append(warns, Warning{
				Name: WarnLimitDepth, Severe: true,
				Detail: fmt.Sprintf("MIME nesting deeper than %d levels; the deeper parts were dropped", lim.MaxDepth),
			})
			return true
		}
		var prev *enmime.Part
		for c := p.FirstChild; c != nil; c = c.NextSibling {
			if st.Parts+1 > lim.MaxParts {
				if prev == nil {
					p.FirstChild = nil
				} else {
					prev.NextSibling = nil
				}
				warns = append(warns, Warning{
					Name: WarnLimitParts, Severe: true,
					Detail: fmt.Sprintf("message has more than %d MIME parts; the rest was dropped", lim.MaxParts),
				})
				return false
			}
			st.Parts++
			if !walk(c, depth+1) {
				c.NextSibling = nil
				return false
			}
			prev = c
		}
		return true
	}
	walk(root, 0)
	return st, warns
}
