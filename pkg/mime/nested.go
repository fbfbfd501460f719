package mime

import (
	"fmt"
	"strings"
)

// NestedType reports whether parts of media type ct (lower case, no parameters) carry a whole
// message or its header block, and are described as nested messages: message/rfc822 (RFC 2046
// 5.2.1: forwarded mail, the returned message of a bounce), message/global (its RFC 6532 UTF-8
// form), and the headers-only text/rfc822-headers (RFC 6522) and message/global-headers that
// bounces and feedback reports attach instead of the whole message.
func NestedType(ct string) bool {
	switch ct {
	case "message/rfc822", "message/global", "text/rfc822-headers", "message/global-headers":
		return true
	}
	return false
}

// describeNested parses the content of every nested-message part of m (see NestedType) into
// its Attachment.Message, recursively up to Limits.MaxNestedDepth levels. The content was
// already counted against the decoded-size budget, and each level is bounded by the same
// limits, so the work stays within MaxNestedDepth times that of the message itself.
func (p *Parser) describeNested(r *run, m *Message, level int, w *warnings) {
	for i := range m.Attachments {
		a := &m.Attachments[i]
		if !NestedType(a.ContentType) || len(a.Content) == 0 {
			continue
		}
		if level+1 > p.cfg.limits.MaxNestedDepth {
			w.add(Warning{
				Name:   WarnNestedTooDeep,
				Detail: fmt.Sprintf("a %s part nested deeper than %d messages is kept as a plain attachment", a.ContentType, p.cfg.limits.MaxNestedDepth),
			})
			continue
		}
		content := a.Content
		if strings.HasSuffix(a.ContentType, "-headers") {
			// A header block alone: the blank line makes it a message without a body, whatever
			// the part ended with.
			content = append(content[:len(content):len(content)], "\r\n\r\n"...)
		}
		nm, err := p.parse(r, content, level+1, nil)
		if err != nil {
			w.add(Warning{
				Name:   WarnNestedUnreadable,
				Detail: fmt.Sprintf("a %s part has no readable header fields; kept as a plain attachment", a.ContentType),
			})
			continue
		}
		for j := range nm.Attachments {
			nm.Attachments[j].Content = nil
		}
		a.Message = nm
	}
}
