package mime

import (
	"bytes"
	"net/textproto"
	"strings"

	"github.com/jhillyerd/enmime/v2"
)

// containerPart returns the part enmime makes of a multipart container from its header block
// head (when split reads the container's header with enmime.ReadParts, that is the part it
// gets, then children are attached), without enmime reading the block, when the block is one
// whose part is plain to build: every line a field of a plain name (letters, digits, '-' and
// '_' right before the colon) or a continuation line, no CR inside a line (mimeHeader's rule:
// enmime then reports no problem with the block and reads each field on its own); the first
// Content-Type field reads as mtype with boundary and no malformed parameter; and the block
// gives no file name, modification date, disposition or content id, which enmime would decode
// with its own rules. ok is false otherwise, and the caller has enmime read the block.
//
// Reading a container's header was a sixth of the enmime reads on bounces, each with its own
// 4 KiB buffer, for a part whose content enmime never reads. The part is a copy of the run's
// template (see run.template), a container enmime read, so that it carries enmime's parser
// settings like the parts enmime reads; its exported fields are then set as enmime's
// setupHeaders sets them.
func (r *run) containerPart(head []byte, mtype, boundary string) (*enmime.Part, bool) {
	header, ok := plainHeader(head)
	if !ok {
		return nil, false
	}
	ct := header.Get("Content-Type")
	gotType, params, invalid, err := r.parseMediaType(ct)
	if err != nil || gotType != mtype || params["boundary"] != boundary || len(invalid) > 0 ||
		params["name"] != "" || params["file"] != "" || params["modification-date"] != "" ||
		header.Get("Content-Disposition") != "" || header.Get("Content-Id") != "" {
		return nil, false
	}
	tmpl, err := r.template()
	if err != nil {
		return nil, false
	}
	p := new(enmime.Part)
	*p = *tmpl
	p.PartID, p.Parent, p.FirstChild, p.NextSibling = "", nil, nil, nil
	p.Header = header
	p.Boundary, p.ContentType, p.Charset = boundary, mtype, params["charset"]
	p.ContentID, p.Disposition, p.FileName, p.OrigCharset = "", "", "", ""
	p.ContentTypeParams, p.Errors, p.Content, p.ContentReader, p.Epilogue = nil, nil, nil, nil, nil
	return p, true
}

// templateHead is the container header the run's template part is read from.
const templateHead = "Content-Type: multipart/mixed; boundary=x\r\n\r\n"

// template returns a container part enmime read in this run (see containerPart).
func (r *run) template() (*enmime.Part, error) {
	if r.tmpl == nil {
		p, err := r.readEnmime([]byte(templateHead))
		if err != nil {
			return nil, err
		}
		r.tmpl = p
	}
	return r.tmpl, nil
}

// plainHeader reads a header block as enmime's ReadHeader does when every line is plain (see
// containerPart): a field's value is the rest of its line and its continuation lines, each
// trimmed of ASCII white space and joined by one space, with the white space after the colon
// and at the end dropped; names are canonicalized. ok is false for a block that is not plain.
func plainHeader(b []byte) (textproto.MIMEHeader, bool) {
	h := textproto.MIMEHeader{}
	var key string
	var value []byte
	flush := func() {
		if key != "" {
			h[key] = append(h[key], string(bytes.TrimLeft(trimASCII(value), " \t")))
		}
		key, value = "", value[:0]
	}
	pos := 0
	for pos < len(b) {
		end := len(b)
		if i := bytes.IndexByte(b[pos:], '\n'); i >= 0 {
			end = pos + i + 1
		}
		line := b[pos:end]
		text := bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
		pos = end
		if bytes.IndexByte(text, '\r') >= 0 {
			return nil, false
		}
		switch {
		case len(text) == 0:
			if len(line) == 1 && line[0] == '\r' {
				return nil, false // a lone CR at the end: a continuation to enmime
			}
			flush()
			return h, true
		case text[0] == ' ' || text[0] == '\t':
			if key == "" {
				return nil, false
			}
			value = append(append(value, ' '), trimASCII(text)...)
		default:
			colon := 0
			for colon < len(text) && plainNameByte(text[colon]) {
				colon++
			}
			if colon == 0 || colon == len(text) || text[colon] != ':' {
				return nil, false
			}
			flush()
			key = canonicalKey(text[:colon])
			value = append(value, trimASCII(text[colon+1:])...)
		}
	}
	flush()
	return h, true
}

// trimASCII trims ASCII white space (space, tab, CR, LF) from both ends of b.
func trimASCII(b []byte) []byte {
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// canonicalKey is the canonical form of a plain field name: upper case at the start and after
// each '-', lower case elsewhere.
func canonicalKey(name []byte) string {
	var b strings.Builder
	b.Grow(len(name))
	upper := true
	for _, c := range name {
		switch {
		case upper && 'a' <= c && c <= 'z':
			c -= 'a' - 'A'
		case !upper && 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		b.WriteByte(c)
		upper = c == '-'
	}
	return b.String()
}
