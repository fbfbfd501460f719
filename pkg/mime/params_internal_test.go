package mime

import (
	"reflect"
	"testing"
)

func TestParseMediaTypeRepairs(t *testing.T) {
	for _, tt := range []struct {
		name   string
		in     string
		mtype  string
		params map[string]string
	}{
		{
			name:   "white space after '=' (php-mmp m0013, Outlook)",
			in:     `attachment; filename= "=?iso-8859-1?Q?ATT_N=B0_1.?= =?iso-8859-1?Q?pdf?="; size=631148; creation-date="Fri, 14 Mar 2014 08:48:19 GMT"`,
			mtype:  "attachment",
			params: map[string]string{"filename": "ATT N° 1.pdf", "size": "631148", "creation-date": "Fri, 14 Mar 2014 08:48:19 GMT"},
		},
		{
			name:   "white space before '='",
			in:     `application/pdf; name ="a b.pdf"`,
			mtype:  "application/pdf",
			params: map[string]string{"name": "a b.pdf"},
		},
		{
			name:   "RFC 2231 in ISO-8859-1",
			in:     `attachment; filename*=ISO-8859-1''Eelanal%FC%FCsi%20p%E4ring.jpg`,
			mtype:  "attachment",
			params: map[string]string{"filename": "Eelanalüüsi päring.jpg"},
		},
		{
			name:   "RFC 2231 continuations in Shift_JIS split inside a character",
			in:     `attachment; filename*0*=shift_jis''%82; filename*1*=%A0.txt`,
			mtype:  "attachment",
			params: map[string]string{"filename": "あ.txt"},
		},
		{
			name:   "RFC 2231 with a language and a byte the charset does not map (mail gem)",
			in:     `application/octet-stream; name*=iso-2022-jp'ja'01%20Quien%20Te%20Dij%8aat.%20Pitbull.mp3`,
			mtype:  "application/octet-stream",
			params: map[string]string{"name": "01 Quien Te Dij\ufffdat. Pitbull.mp3"},
		},
		{
			name:   "RFC 2231 in an unknown charset is rescued",
			in:     `attachment; filename*=x-unknown''caf%E9.txt`,
			mtype:  "attachment",
			params: map[string]string{"filename": "café.txt"},
		},
		{
			name:   "RFC 2231 in UTF-8 is left to Go",
			in:     `attachment; filename*=utf-8''%E2%82%AC.txt`,
			mtype:  "attachment",
			params: map[string]string{"filename": "€.txt"},
		},
		{
			name:   "raw 8-bit Latin-1 in a quoted value (Eudora)",
			in:     "text/plain; name=\"HasenundFr\xf6sche.txt\"; x-mac-type=\"54455854\"",
			mtype:  "text/plain",
			params: map[string]string{"name": "HasenundFrösche.txt", "x-mac-type": "54455854", "charset": undeclaredCharset},
		},
		{
			name:   "raw UTF-8 is kept",
			in:     `attachment; filename="管理.doc"`,
			mtype:  "attachment",
			params: map[string]string{"filename": "管理.doc"},
		},
		{
			name:   "'=' inside a quoted value is not touched",
			in:     `multipart/mixed; boundary="----=_Part_1 = 2"`,
			mtype:  "multipart/mixed",
			params: map[string]string{"boundary": "----=_Part_1 = 2"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mtype, params, _, err := parseMediaType(tt.in)
			if err != nil {
				t.Fatalf("parseMediaType(%q): %v", tt.in, err)
			}
			// enmime hands non-ASCII values on as RFC 2047 words, decoded where the filename
			// is read (coding.DecodeExtHeader); compare what that yields.
			for k, v := range params {
				params[k], _ = decodeWords(v)
			}
			if mtype != tt.mtype || !reflect.DeepEqual(params, tt.params) {
				t.Errorf("parseMediaType(%q) = %q %q, want %q %q", tt.in, mtype, params, tt.mtype, tt.params)
			}
		})
	}
}

func TestCleanMediaTypeLeavesOrdinaryValues(t *testing.T) {
	for _, v := range []string{
		`text/plain; charset="us-ascii"`,
		`multipart/alternative; boundary="b1"; charset=utf-8`,
		`attachment`,
		`text/plain; name="unclosed`,
		``,
	} {
		if got := cleanMediaType(v); got != v {
			t.Errorf("cleanMediaType(%q) = %q, want it unchanged", v, got)
		}
	}
}
