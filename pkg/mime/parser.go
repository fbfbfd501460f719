package mime

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/jhillyerd/enmime/v2"
	"github.com/jhillyerd/enmime/v2/mediatype"
)

// ErrNoHeaders is returned by [Parser.Parse] when the input has no readable header block (it is
// empty, or its first lines are not header fields). Nothing usable can come out of such input;
// the parser stage sends it to the dead-letter topic with class parse.
var ErrNoHeaders = errors.New("message has no readable header fields")

// DefaultMaxWarnings is the default of [WithMaxWarnings].
const DefaultMaxWarnings = 100

// Option configures a [Parser].
type Option interface{ apply(*config) }

type config struct {
	limits      Limits
	maxWarnings int
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithLimits replaces the MIME-bomb limits (default [DefaultLimits]). Zero fields keep their
// defaults.
func WithLimits(l Limits) Option {
	return optionFunc(func(c *config) {
		c.limits = l.withDefaults()
	})
}

// WithMaxWarnings caps the warnings kept per message (default 100); the rest are counted in one
// final warnings_truncated warning. Identical warnings are always kept once.
func WithMaxWarnings(n int) Option { return optionFunc(func(c *config) { c.maxWarnings = n }) }

func defaultConfig() config {
	return config{limits: DefaultLimits(), maxWarnings: DefaultMaxWarnings}
}

func (c config) validate() error {
	var errs []error
	if err := c.limits.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.maxWarnings < 1 {
		errs = append(errs, fmt.Errorf("max warnings must be at least 1, got %d", c.maxWarnings))
	}
	return errors.Join(errs...)
}

// maxStoredPartErrors is how many errors enmime keeps per part.
const maxStoredPartErrors = 16

// Parser parses raw messages. It holds configuration, and scratch state for one call at a time
// in a pool; it is safe for concurrent use.
type Parser struct {
	cfg config
	// enmimeOpts configure enmime, but for the media-type parser, which each run adds (see
	// run.parseMediaType).
	enmimeOpts []enmime.Option
	// runs holds *run values between calls (see run).
	runs sync.Pool
}

// NewParser returns a Parser with the given options, or an error naming each invalid option.
func NewParser(opts ...Option) (*Parser, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		o.apply(&cfg)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Parser{
		cfg: cfg,
		enmimeOpts: []enmime.Option{
			// Keep going past broken parts and record them instead (habit 12).
			enmime.SkipMalformedParts(true),
			enmime.MultipartWOBoundaryAsSinglePart(true),
			enmime.SetReadPartErrorPolicy(keepCorruptBase64),
			enmime.MaxStoredPartErrors(maxStoredPartErrors),
			// Trust declared charsets; undeclared ones are decided in repairText (see
			// undeclaredCharset).
			enmime.DisableCharacterDetection(true),
			// We render text from HTML ourselves, after the charset repair.
			enmime.DisableTextConversion(true),
		},
	}, nil
}

// Limits returns the limits the parser enforces.
func (p *Parser) Limits() Limits { return p.cfg.limits }

// Parse parses one raw RFC 5322 message. It returns an error ([ErrNoHeaders]) only when not
// even a header field can be read; every other problem is reported in Message.Warnings and
// Message.Status. The returned Message does not share memory with raw.
func (p *Parser) Parse(raw []byte) (*Message, error) {
	r := p.getRun()
	defer p.putRun(r)
	return p.parse(r, raw, 0, nil)
}

// SpoolLookup resolves the value of a [SpoolHeader] field of a part to the description of the
// body that was moved out of the message (package spool); false for a value it did not write.
type SpoolLookup func(value string) (Spooled, bool)

// SpoolHeader names the header field a part whose body was spooled carries (spool.Header).
const SpoolHeader = "X-Mailpipe-Spooled"

// Spooled describes a part whose body is not in the message given to [Parser.ParseSpooled].
type Spooled struct {
	// Key is the SpoolHeader value that named the part; the caller resolves it to the bytes.
	Key string
	// Size and SHA256 describe the decoded body; Head holds its first bytes, for sniffing.
	Size   int64
	SHA256 string
	Head   []byte
}

// ParseSpooled parses raw, a message whose large bodies were moved out beforehand (package
// spool): a part carrying a SpoolHeader field that lookup resolves is listed as an attachment
// with the spooled body's size, hash and sniffed type, and Attachment.Spooled set; its Content
// is nil. Nested messages inside spooled parts are not described.
func (p *Parser) ParseSpooled(raw []byte, lookup SpoolLookup) (*Message, error) {
	r := p.getRun()
	defer p.putRun(r)
	return p.parse(r, raw, 0, lookup)
}

// parse parses a message at nesting level (0 for the message itself, 1 for a message attached
// to it, ...).
func (p *Parser) parse(r *run, raw []byte, level int, spooled SpoolLookup) (*Message, error) {
	w := &warnings{max: p.cfg.maxWarnings}
	b, pre := preprocess(raw)
	w.add(pre...)
	fields, body, hw := scanHeaders(b)
	if len(fields) == 0 {
		return nil, ErrNoHeaders
	}
	if kept, from, lw := p.cfg.limits.cutHeaders(fields, body); lw != nil {
		fields = kept
		w.add(*lw)
		b = dropHeaderFields(b, from, body)
	}
	m := &Message{}
	p.readHeaders(m, fieldSet(fields), w)
	if spooled != nil {
		// A spooled single-part message carries the spool's field in its own header: it is
		// ours, not the sender's.
		m.Headers = slices.DeleteFunc(m.Headers, func(h Header) bool {
			_, ours := spooled(h.Value)
			return ours && strings.EqualFold(h.Name, SpoolHeader)
		})
	}

	scan := runPrescan(b, p.cfg.limits, r.parseMediaType)
	w.add(scan.warnings...)
	input := scan.apply()

	failed := false
	root, err := p.readParts(r, input, scan.headers())
	if err != nil {
		failed = true
		w.add(Warning{Name: WarnMIMEUnreadable, Severe: true, Detail: "reading MIME structure: " + safeDetail(err)})
		w.add(hw...) // enmime reports these itself when it gets that far
	} else {
		decodeUUEncoded(root)
		decodeSevenBitParts(root, w)
		stats, lw := enforce(root, p.cfg.limits)
		m.Stats = stats
		defaultTypes(root)
		repairText(root, w)
		for _, x := range lw {
			// prescan already reported the same limit in its own words.
			if !hasWarning(scan.warnings, x.Name) {
				w.add(x)
			}
		}
		if err := p.readBody(r, m, root, w, spooled); err != nil {
			failed = true
			w.add(Warning{Name: WarnMIMEUnreadable, Severe: true, Detail: "reading MIME body: " + safeDetail(err)})
		} else {
			keepUnsplitBody(m, root, input, w)
		}
	}
	p.describeNested(r, m, level, w)
	m.Warnings = w.result()
	switch {
	case failed:
		m.Status = StatusFailed
	case w.severe:
		m.Status = StatusPartial
	default:
		m.Status = StatusOK
	}
	return m, nil
}

func hasWarning(ws []Warning, name string) bool {
	for _, x := range ws {
		if x.Name == name {
			return true
		}
	}
	return false
}

func safeDetail(err error) string {
	s, _ := validUTF8(err.Error())
	return s
}

// readHeaders fills the header-derived fields of m.
func (p *Parser) readHeaders(m *Message, fs fieldSet, w *warnings) {
	fs, hw := fs.decodeRaw8bit()
	w.add(hw...)
	m.Headers = make([]Header, 0, len(fs))
	var bad []string
	var idx fieldIndex
	for i, f := range fs {
		v, rescued := decodeWords(f.raw)
		if rescued {
			bad = append(bad, f.name)
		}
		m.Headers = append(m.Headers, Header{Name: f.name, Value: v})
		idx.add(i, f.name)
	}
	if len(bad) > 0 {
		w.add(Warning{Name: WarnHeaderNotUTF8, Detail: fmt.Sprintf("raw 8-bit bytes that are not UTF-8 in %s; charset guessed", strings.Join(bad, ", "))})
	}

	addrs := func(name string, at []int) []Address {
		var out []Address
		for _, i := range at {
			v := fs[i].raw
			a, ok := parseAddresses(v)
			if !ok {
				w.add(Warning{Name: WarnAddressUnparseable, Detail: fmt.Sprintf("%s: could not read %q", name, truncate([]byte(v), 120))})
			}
			out = append(out, a...)
		}
		return out
	}
	if from := addrs("From", idx.from); len(from) > 0 {
		m.From = &from[0]
	}
	if sender := addrs("Sender", idx.sender); len(sender) > 0 {
		m.Sender = &sender[0]
	}
	m.ReplyTo = addrs("Reply-To", idx.replyTo)
	m.To = addrs("To", idx.to)
	m.Cc = addrs("Cc", idx.cc)

	if len(idx.subject) > 0 {
		m.Subject = strings.TrimSpace(m.Headers[idx.subject[0]].Value) // decoded above
	}

	if len(idx.date) > 0 {
		v := fs[idx.date[0]].raw
		m.DateRaw, _ = validUTF8(v)
		if t, ok := parseDate(v); ok {
			m.Date = &t
		} else {
			w.add(Warning{Name: WarnDateUnparseable, Detail: fmt.Sprintf("Date %q could not be read", truncate([]byte(m.DateRaw), 120))})
		}
	} else {
		w.add(Warning{Name: WarnDateMissing, Detail: "message has no Date header"})
	}

	if len(idx.messageID) > 0 {
		m.MessageID = firstMessageID(fs[idx.messageID[0]].raw)
	}
	if m.MessageID == "" {
		w.add(Warning{Name: WarnMessageIDMissing, Detail: "message has no Message-ID"})
	}
	if len(idx.inReplyTo) > 0 {
		if ids := messageIDs(fs[idx.inReplyTo[0]].raw); len(ids) > 0 {
			m.InReplyTo = ids[0]
		}
	}
	for _, i := range idx.references {
		for _, id := range messageIDs(fs[i].raw) {
			if !contains(m.References, id) {
				m.References = append(m.References, id)
			}
		}
	}
}

// fieldIndex lists where the fields readHeaders reads are in a header block, found in one
// pass rather than one pass per name.
type fieldIndex struct {
	from, sender, replyTo, to, cc, subject, date, messageID, inReplyTo, references []int
}

// add records field i, called name, when it is one of the fields of fieldIndex.
func (x *fieldIndex) add(i int, name string) {
	var list *[]int
	switch len(name) {
	case 2:
		switch {
		case strings.EqualFold(name, "To"):
			list = &x.to
		case strings.EqualFold(name, "Cc"):
			list = &x.cc
		}
	case 4:
		switch {
		case strings.EqualFold(name, "From"):
			list = &x.from
		case strings.EqualFold(name, "Date"):
			list = &x.date
		}
	case 6:
		if strings.EqualFold(name, "Sender") {
			list = &x.sender
		}
	case 7:
		if strings.EqualFold(name, "Subject") {
			list = &x.subject
		}
	case 8:
		if strings.EqualFold(name, "Reply-To") {
			list = &x.replyTo
		}
	case 10:
		switch {
		case strings.EqualFold(name, "Message-ID"):
			list = &x.messageID
		case strings.EqualFold(name, "References"):
			list = &x.references
		}
	case 11:
		if strings.EqualFold(name, "In-Reply-To") {
			list = &x.inReplyTo
		}
	}
	if list != nil {
		*list = append(*list, i)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// readBody fills text, HTML and attachments from enmime's tree.
func (p *Parser) readBody(r *run, m *Message, root *enmime.Part, w *warnings, spooled SpoolLookup) error {
	env, err := r.enmime.EnvelopeFromPart(root)
	if err != nil {
		return err
	}
	for _, e := range env.Errors {
		if strings.Contains(e.Detail, undeclaredCharset) {
			continue // our own marker, see undeclaredCharset
		}
		w.add(fromEnmime(e))
	}
	if strings.HasPrefix(root.ContentType, "multipart/") && root.FirstChild == nil && root.Boundary == "" {
		w.add(Warning{
			Name: WarnMultipartNoBoundary, Severe: true,
			Detail: fmt.Sprintf("%s without a boundary parameter; its body was kept as one opaque part", root.ContentType),
		})
	}
	m.HTML = env.HTML
	m.Text = env.Text
	if m.Text == "" && m.HTML != "" {
		m.Text = htmlText(m.HTML)
	}
	// One line-ending convention for every consumer (reply stripping, rules, CRMs).
	m.Text = strings.ReplaceAll(m.Text, "\r\n", "\n")

	body := bodyParts(root, env)
	eachPart(root, func(part *enmime.Part) {
		if part.FirstChild != nil || body[part] || (strings.HasPrefix(part.ContentType, "multipart/") && part != root) {
			return
		}
		if part == root && strings.HasPrefix(part.ContentType, "multipart/") && part.Boundary != "" {
			return // an empty multipart, not an attachment
		}
		a := attachment(part, m.HTML)
		if spooled != nil {
			for _, v := range part.Header.Values(SpoolHeader) {
				if sp, ok := spooled(v); ok {
					a.Size, a.SHA256, a.SniffedType, a.Content = sp.Size, sp.SHA256, sniff(sp.Head), nil
					a.Spooled = &sp
					m.Stats.DecodedSize += sp.Size
				}
			}
		}
		m.Attachments = append(m.Attachments, a)
	})
	return nil
}

// bodyParts returns the leaf parts whose content enmime put into the text or HTML body, using
// enmime's own selection rules, so that everything else is listed as an attachment and nothing
// is silently lost.
func bodyParts(root *enmime.Part, env *enmime.Envelope) map[*enmime.Part]bool {
	body := map[*enmime.Part]bool{}
	if root.FirstChild == nil {
		for _, a := range env.Attachments {
			if a == root {
				return body
			}
		}
		for _, a := range env.Inlines {
			if a == root {
				return body
			}
		}
		body[root] = true
		return body
	}
	isText := func(p *enmime.Part) bool {
		return p.ContentType == "text/plain" && p.Disposition != "attachment"
	}
	if root.ContentType == "multipart/alternative" {
		if p := root.BreadthMatchFirst(isText); p != nil {
			body[p] = true
		}
	} else {
		for _, p := range root.DepthMatchAll(isText) {
			body[p] = true
		}
	}
	if p := root.DepthMatchFirst(func(p *enmime.Part) bool {
		return p.ContentType == "text/html" && p.Disposition != "attachment"
	}); p != nil {
		body[p] = true
	}
	return body
}

// attachment describes one leaf part.
func attachment(p *enmime.Part, html string) Attachment {
	sum := sha256.Sum256(p.Content)
	name, _ := validUTF8(strings.TrimSpace(p.FileName))
	cid, _ := validUTF8(strings.TrimSpace(p.ContentID))
	ct := strings.ToLower(p.ContentType)
	if ct == "" {
		// A container neutralized by the depth limit keeps its type under depthMarker.
		if v := p.Header.Get(depthMarker); v != "" {
			if mt, _, _, err := mediatype.Parse(v); err == nil {
				ct = strings.ToLower(mt)
			}
		}
	}
	inline := strings.EqualFold(p.Disposition, "inline") ||
		(cid != "" && html != "" && (strings.Contains(html, "cid:"+cid) || strings.Contains(strings.ToLower(html), "cid:"+strings.ToLower(cid))))
	return Attachment{
		Filename:    name,
		ContentType: ct,
		SniffedType: sniff(p.Content),
		Size:        int64(len(p.Content)),
		SHA256:      hex.EncodeToString(sum[:]),
		ContentID:   cid,
		Inline:      inline,
		Content:     p.Content,
	}
}

// parseMediaType is enmime's media-type parser with two changes: a value it cannot parse still
// yields its type when one is recognizable (enmime would fail the whole message on a root
// Content-Type such as "text/plain>"), and the charset of a text type is the one markCharset
// gives (undeclaredCharset for none or us-ascii, which is mislabelled UTF-8 in practice).
func parseMediaType(ctype string) (string, map[string]string, []string, error) {
	var invalid []string
	var err error
	// A value quickMediaType reads is one cleanMediaType leaves as it is (ASCII, no RFC 2231
	// name, no white space around '='), so cleaning is only needed for the others.
	mtype, params, ok := quickMediaType(ctype)
	if !ok {
		ctype = cleanMediaType(ctype)
		if mtype, params, ok = quickMediaType(ctype); !ok {
			mtype, params, invalid, err = mediatype.ParseWithOptions(ctype, mediatype.ParseOptions{StripMediaTypeInvalidCharacters: true})
		}
	}
	if err != nil {
		t := strings.ToLower(strings.TrimSpace(strings.SplitN(ctype, ";", 2)[0]))
		t = strings.TrimRight(t, "<>\"' ")
		slash := strings.IndexByte(t, '/')
		if slash <= 0 || slash == len(t)-1 || strings.ContainsAny(t, " \t<>\"") {
			return "", nil, nil, err
		}
		mtype, params, invalid = t, map[string]string{}, []string{strings.TrimSpace(ctype)}
	}
	if strings.HasPrefix(mtype, "text/") && params != nil {
		label := strings.ToLower(strings.TrimSpace(params["charset"]))
		if cs := markCharset(label); cs != label {
			params["charset"] = cs
		}
	}
	return mtype, params, invalid, nil
}

// defaultTypes gives parts without a Content-Type the RFC 2045/2046 default: text/plain, or
// message/rfc822 inside a multipart/digest. enmime leaves their type empty, which would list a
// bounce's human-readable text as an anonymous attachment. Containers neutralized by the depth
// limit keep no type and lose enmime's complaint about it.
func defaultTypes(root *enmime.Part) {
	eachPart(root, func(p *enmime.Part) {
		if p.Header.Get(depthMarker) != "" {
			p.Errors = nil // "missing Content-Type": our doing (see depthMarker), already warned about
			return
		}
		if p.FirstChild != nil || p.ContentType != "" || p == root {
			return
		}
		if p.Parent != nil && p.Parent.ContentType == "multipart/digest" {
			p.ContentType = "message/rfc822"
		} else {
			p.ContentType = "text/plain"
		}
		// The default is the standard's, not a repair: enmime's "missing Content-Type" is no
		// problem of the message.
		p.Errors = withoutError(p.Errors, enmime.ErrorMissingContentType)
	})
}

// repairText makes the content of every text/plain and text/html leaf that may become the body
// valid UTF-8. Parts with undeclaredCharset are kept as they are when valid and detected
// otherwise; parts whose declared charset enmime could not apply (unknown label, or utf-8 that
// is not) are rescued the same way. Attachments keep their bytes: they go to the blob store as
// sent.
func repairText(root *enmime.Part, w *warnings) {
	eachPart(root, func(p *enmime.Part) {
		if p.Charset == undeclaredCharset {
			p.Charset = ""
		}
	})
	eachPart(root, func(p *enmime.Part) {
		if p.FirstChild != nil || (p.ContentType != "text/plain" && p.ContentType != "text/html") ||
			strings.EqualFold(p.Disposition, "attachment") {
			return
		}
		undeclared := p.Charset == ""
		if utf8.Valid(p.Content) {
			return
		}
		s, how := rescue(p.Content, p.ContentType == "text/html")
		p.Content = []byte(s)
		if undeclared {
			w.add(Warning{Name: WarnCharsetDetected, Detail: fmt.Sprintf("part %s (%s) declares no charset and is not UTF-8; %s", p.PartID, p.ContentType, how)})
		} else {
			w.add(Warning{Name: WarnInvalidUTF8, Detail: fmt.Sprintf("part %s (%s) with charset %q is not valid UTF-8; %s", p.PartID, p.ContentType, p.Charset, how)})
		}
	})
}
