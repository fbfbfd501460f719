package mime

import (
	"bytes"
	"strings"

	"github.com/jhillyerd/enmime/v2"
)

// decodeUUEncoded decodes the leaf parts sent with Content-Transfer-Encoding x-uuencode (or
// uuencode, x-uue, uue), which Eudora and older Mac and Windows clients used for attachments.
// enmime does not know the encoding and keeps such a body as sent, so the attachment's bytes,
// size, digest and sniffed type would be those of the uuencoded text. A part whose body is not
// readable uuencode keeps its bytes and enmime's transfer_encoding_unknown warning; a decoded
// one loses the warning, and a text part is converted from its declared charset as enmime
// converts every other text part.
func decodeUUEncoded(root *enmime.Part) {
	eachPart(root, func(p *enmime.Part) {
		if p.FirstChild != nil {
			return
		}
		switch strings.ToLower(strings.TrimSpace(p.Header.Get("Content-Transfer-Encoding"))) {
		case "x-uuencode", "uuencode", "x-uue", "uue":
		default:
			return
		}
		data, name, ok := uudecode(p.Content)
		if !ok {
			return
		}
		if strings.HasPrefix(p.ContentType, "text/") && p.Charset != "" && p.Charset != undeclaredCharset {
			if s, ok := decodeCharset(p.Charset, data); ok {
				data = []byte(s)
			}
		}
		p.Content = data
		if strings.TrimSpace(p.FileName) == "" && name != "" {
			p.FileName, _ = validUTF8(name)
		}
		p.Errors = withoutError(p.Errors, enmime.ErrorContentEncoding)
	})
}

// uudecode decodes a uuencoded body: optional blank lines, "begin <mode> <name>", encoded
// lines, and "end" (a missing "end" is tolerated). Lines whose trailing blanks were stripped in
// transit are padded. ok is false when there is no begin line or a line is not uuencode.
func uudecode(b []byte) (data []byte, name string, ok bool) {
	var lines [][]byte
	for _, l := range bytes.Split(b, []byte{'\n'}) {
		lines = append(lines, bytes.TrimRight(l, "\r"))
	}
	i := 0
	for i < len(lines) && len(bytes.TrimSpace(lines[i])) == 0 {
		i++
	}
	if i == len(lines) || !bytes.HasPrefix(lines[i], []byte("begin ")) {
		return nil, "", false
	}
	if f := strings.SplitN(strings.TrimSpace(string(lines[i][len("begin "):])), " ", 2); len(f) == 2 {
		name = strings.TrimSpace(f[1])
	}
	data = make([]byte, 0, len(b)*3/4)
	for _, l := range lines[i+1:] {
		if string(bytes.TrimSpace(l)) == "end" {
			return data, name, true
		}
		if len(l) == 0 {
			continue
		}
		n := int((l[0] - ' ') & 63)
		if n == 0 {
			continue // the "`" line before end
		}
		enc := l[1:]
		need := (n + 2) / 3 * 4
		if len(enc) < need {
			enc = append(append([]byte(nil), enc...), bytes.Repeat([]byte{' '}, need-len(enc))...)
		}
		for j := 0; j < need; j++ {
			if c := enc[j]; c < ' ' || c > '`' {
				return nil, "", false
			}
		}
		var line []byte
		for j := 0; j+4 <= need; j += 4 {
			c0, c1, c2, c3 := (enc[j]-' ')&63, (enc[j+1]-' ')&63, (enc[j+2]-' ')&63, (enc[j+3]-' ')&63
			line = append(line, c0<<2|c1>>4, c1<<4|c2>>2, c2<<6|c3)
		}
		data = append(data, line[:n]...)
	}
	return data, name, true
}

// withoutError returns errs without the enmime errors called name.
func withoutError(errs []*enmime.Error, name string) []*enmime.Error {
	out := errs[:0:0]
	for _, e := range errs {
		if e.Name != name {
			out = append(out, e)
		}
	}
	return out
}
