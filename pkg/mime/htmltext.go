package mime

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// htmlText renders the plain text of an HTML-only message. Its output is the one the parser
// has always given (github.com/inbucket/html2text with its defaults, which enmime uses too),
// so the records, the goldens and the reply stripper see the same text: paragraphs, lists and
// tables as blank-line separated blocks, <br> and <div> as line breaks, list items as "* ",
// links as "text ( url )", bold as *text*, h1-h3 underlined, blockquotes prefixed with "> " and
// wrapped at 74 columns, head, script and style dropped. It renders the same html.Parse tree
// in one walk over a byte buffer, without html2text's regular expressions and per-rune string
// writes, which made it a fifth of the parser's time on HTML-only mail.
func htmlText(s string) string {
	// html2text strips a byte-order mark twice over (once per layer).
	s = strings.TrimPrefix(strings.TrimPrefix(s, "\ufeff"), "\ufeff")
	doc, err := html.Parse(strings.NewReader(s))
	if err != nil {
		return "" // a strings.Reader does not fail
	}
	var r textRenderer
	r.children(doc)
	return tidyText(r.buf)
}

// blockquoteWidth is the column at which text in a blockquote is wrapped.
const blockquoteWidth = 74

// textRenderer holds the state of one rendering.
type textRenderer struct {
	buf           []byte
	prefix        string // written after every line break: the blockquote marks
	endsWithSpace bool   // the last text written ended with white space
	justClosedDiv bool   // the last element handled was a <div>, now closed
	quoteLevel    int
	lineLength    int // runes since the last line break, prefix not counted
	pre           bool
}

func (r *textRenderer) node(n *html.Node) {
	switch n.Type {
	case html.TextNode:
		if r.pre {
			r.emit(n.Data)
		} else {
			r.emit(collapseSpace(n.Data))
		}
	case html.ElementNode:
		r.element(n)
	default:
		r.children(n)
	}
}

func (r *textRenderer) children(n *html.Node) {
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		r.node(c)
	}
}

func (r *textRenderer) element(n *html.Node) {
	r.justClosedDiv = false
	switch n.DataAtom {
	case atom.Br:
		r.emit("\n")
	case atom.H1, atom.H2, atom.H3:
		var sub textRenderer
		sub.children(n)
		str := string(sub.buf)
		width := 0
		for line := range strings.SplitSeq(str, "\n") {
			width = max(width, utf8.RuneCountInString(line)-1)
		}
		mark := "-"
		if n.DataAtom == atom.H1 {
			mark = "*"
		}
		rule := strings.Repeat(mark, width)
		if n.DataAtom == atom.H3 {
			r.emit("\n\n" + str + "\n" + rule + "\n\n")
		} else {
			r.emit("\n\n" + rule + "\n" + str + "\n" + rule + "\n\n")
		}
	case atom.Blockquote:
		r.quoteLevel++
		r.prefix = strings.Repeat(">", r.quoteLevel) + " "
		r.emit("\n")
		if r.quoteLevel == 1 {
			r.emit("\n")
		}
		r.children(n)
		r.quoteLevel--
		r.prefix = strings.Repeat(">", r.quoteLevel)
		if r.quoteLevel > 0 {
			r.prefix += " "
		}
		r.emit("\n\n")
	case atom.Div:
		if r.lineLength > 0 {
			r.emit("\n")
		}
		r.children(n)
		if !r.justClosedDiv {
			r.emit("\n")
		}
		r.justClosedDiv = true
	case atom.Li:
		r.emit("* ")
		r.children(n)
		r.emit("\n")
	case atom.B, atom.Strong:
		sub := textRenderer{endsWithSpace: true}
		sub.children(n)
		r.emit("*" + string(sub.buf) + "*")
	case atom.A:
		r.link(n)
	case atom.P, atom.Ul, atom.Table:
		r.emit("\n\n")
		r.children(n)
		r.emit("\n\n")
	case atom.Pre:
		r.pre = true
		r.children(n)
		r.pre = false
	case atom.Style, atom.Script, atom.Head:
	default:
		r.children(n)
	}
}

// link renders an <a>: its text (or the alt text of its only image), then the address in
// "( )" unless it is the link's text.
func (r *textRenderer) link(n *html.Node) {
	text := ""
	if c := n.FirstChild; c != nil && c.NextSibling == nil && c.Type == html.TextNode {
		text = c.Data
	}
	if img := n.FirstChild; img != nil && n.LastChild == img && img.DataAtom == atom.Img {
		r.emit(attr(img, "alt"))
	} else {
		r.children(n)
	}
	if href := strings.TrimPrefix(strings.TrimSpace(attr(n, "href")), "mailto:"); href != "" && href != text {
		r.emit("( " + href + " )")
	}
}

// attr returns the value of the first attribute of n called key, or "".
func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// emit appends text: a space first when neither the text written so far nor data brings one
// (unless data starts with '.'), and the prefix after every line break. Inside a blockquote,
// data is first broken into lines of at most blockquoteWidth runes.
func (r *textRenderer) emit(data string) {
	if data == "" {
		return
	}
	if r.quoteLevel == 0 {
		r.line(data, data)
		return
	}
	for _, line := range r.breakLines(data) {
		r.line(line, data)
	}
}

// line appends one line of the text data (see emit).
func (r *textRenderer) line(line, data string) {
	first, _ := utf8.DecodeRuneInString(line)
	last, _ := utf8.DecodeLastRuneInString(line)
	if !unicode.IsSpace(first) && !r.endsWithSpace && !strings.HasPrefix(data, ".") {
		r.buf = append(r.buf, ' ')
		r.lineLength++
	}
	r.endsWithSpace = unicode.IsSpace(last)
	if !utf8.ValidString(line) {
		// Every byte that is not UTF-8 becomes one U+FFFD, as a range over the string gives.
		var b strings.Builder
		for _, c := range line {
			b.WriteRune(c)
		}
		line = b.String()
	}
	for {
		i := strings.IndexByte(line, '\n')
		if i < 0 {
			r.buf = append(r.buf, line...)
			r.lineLength += utf8.RuneCountInString(line)
			return
		}
		r.buf = append(r.buf, line[:i+1]...)
		r.buf = append(r.buf, r.prefix...)
		r.lineLength = 0
		line = line[i+1:]
	}
}

// breakLines wraps data, to be written at column lineLength of a blockquote, at white space
// so that no line is longer than blockquoteWidth runes (a longer word stays whole). Every
// line but the last ends with "\n".
func (r *textRenderer) breakLines(data string) []string {
	runes := []rune(data)
	existing := r.lineLength
	var out []string
	if existing >= blockquoteWidth {
		out = append(out, "\n")
		existing = 0
	}
	for len(runes)+existing > blockquoteWidth {
		i := blockquoteWidth - existing
		for i >= 0 && !unicode.IsSpace(runes[i]) {
			i--
		}
		if i == -1 {
			i = blockquoteWidth - existing
			for i < len(runes) && !unicode.IsSpace(runes[i]) {
				i++
			}
		}
		out = append(out, string(runes[:i])+"\n")
		for i < len(runes) && unicode.IsSpace(runes[i]) {
			i++
		}
		runes = runes[i:]
		existing = 0
	}
	if len(runes) > 0 {
		out = append(out, string(runes))
	}
	return out
}

// collapseSpace replaces every run of spaces, tabs, CRs and LFs in s with one space and trims
// white space from both ends.
func collapseSpace(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c == '\t' || c == '\r' || c == '\n') || (c == ' ' && (i+1 < len(s) && isSpaceRun(s[i+1]))) {
			clean = false
			break
		}
	}
	if !clean {
		b := make([]byte, 0, len(s))
		for i := 0; i < len(s); {
			if isSpaceRun(s[i]) {
				for i < len(s) && isSpaceRun(s[i]) {
					i++
				}
				b = append(b, ' ')
				continue
			}
			b = append(b, s[i])
			i++
		}
		s = string(b)
	}
	return strings.TrimSpace(s)
}

func isSpaceRun(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// tidyText finishes a rendering: the space after a line break is dropped, runs of more than
// one blank line become one, and white space is trimmed from both ends.
func tidyText(b []byte) string {
	out := b[:0] // in place: the output is never longer than what was read
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c == '\n' && i+1 < len(b) && b[i+1] == ' ' {
			i++ // "\n " becomes "\n"
		}
		if c == '\n' && len(out) >= 2 && out[len(out)-1] == '\n' && out[len(out)-2] == '\n' {
			continue // a third line break in a row
		}
		out = append(out, c)
	}
	return strings.TrimSpace(string(out))
}
