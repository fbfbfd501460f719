package mime

import (
	"strings"
	"testing"

	"golang.org/x/text/encoding/simplifiedchinese"
)

func TestDecodeRaw8bit(t *testing.T) {
	gb := func(s string) string {
		t.Helper()
		b, err := simplifiedchinese.GBK.NewEncoder().String(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tt := range []struct {
		name   string
		fields fieldSet
		want   map[string]string // field name → value after conversion
		warn   string            // part of the warning's detail; "" for no warning
	}{
		{
			name: "short GB2312 display name read with the declared charset",
			fields: fieldSet{
				{name: "From", raw: `"` + gb("台湾鑫龙") + `" <a@example.com>`},
				{name: "Content-Type", raw: "text/plain; charset=gb2312"},
			},
			want: map[string]string{"From": `"台湾鑫龙" <a@example.com>`},
			warn: "read as gb2312 (the charset the message declares)",
		},
		{
			name: "no declared charset: detected over all fields together",
			fields: fieldSet{
				{name: "From", raw: `"` + gb("台湾鑫龙商贸集团公司") + `" <a@example.com>`},
				{name: "Subject", raw: gb("全新原装进口，送货上门，货到付款－台湾鑫龙商贸集团公司向您拜年!")},
				{name: "Content-Type", raw: "multipart/mixed; boundary=b"},
			},
			want: map[string]string{
				"From":    `"台湾鑫龙商贸集团公司" <a@example.com>`,
				"Subject": "全新原装进口，送货上门，货到付款－台湾鑫龙商贸集团公司向您拜年!",
			},
			warn: "(detected)",
		},
		{
			name: "8-bit bytes inside an encoded word are left to decodeWords",
			fields: fieldSet{
				{name: "Subject", raw: "=?iso-8859-1?Q?Fr\xf6sche?= and more"},
			},
			want: map[string]string{"Subject": "=?iso-8859-1?Q?Fr\xf6sche?= and more"},
		},
		{
			name: "the declared charset does not fit: not used",
			fields: fieldSet{
				{name: "Subject", raw: "caf\xe9"},
				{name: "Content-Type", raw: "text/plain; charset=shift_jis"},
			},
			want: map[string]string{"Subject": "caf\xe9"}, // too short to detect: decodeWords rescues it
		},
		{
			name:   "UTF-8 untouched",
			fields: fieldSet{{name: "Subject", raw: "Grüße"}},
			want:   map[string]string{"Subject": "Grüße"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, warns := tt.fields.decodeRaw8bit()
			for name, want := range tt.want {
				if v, _ := got.first(name); v != want {
					t.Errorf("%s = %q, want %q", name, v, want)
				}
			}
			switch {
			case tt.warn == "" && len(warns) > 0:
				t.Errorf("warnings %+v, want none", warns)
			case tt.warn != "" && (len(warns) != 1 || warns[0].Name != WarnHeaderNotUTF8 || !strings.Contains(warns[0].Detail, tt.warn)):
				t.Errorf("warnings %+v, want one header_not_utf8 with %q", warns, tt.warn)
			}
		})
	}
}
