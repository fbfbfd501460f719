package mime

import (
	"bufio"
	"bytes"
	"fmt"
	"reflect"
	"testing"

	"github.com/jhillyerd/enmime/v2"
)

// problems collects what enmime.ReadHeader reports.
type problems []string

func (p *problems) AddError(name, format string, args ...any) {
	*p = append(*p, name+": "+fmt.Sprintf(format, args...))
}

func (p *problems) AddWarning(name, format string, args ...any) {
	*p = append(*p, name+": "+fmt.Sprintf(format, args...))
}

// FuzzPlainHeader checks plainHeader against enmime.ReadHeader wherever it reads a block.
func FuzzPlainHeader(f *testing.F) {
	for _, s := range []string{
		"Content-Type: multipart/mixed;\r\n boundary=\"x\"\r\nMIME-Version: 1.0\r\n\r\n",
		"content-type:multipart/alternative; boundary=y  \n\t \n\tcharset=x\nX_Y-z: a\n\n",
		"A: 1\r\nA: 2\r\n",
		"A:\r\n\r\n",
		"A: x\r\n b\r",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := plainHeader(b)
		if !ok {
			return
		}
		var probs problems
		want, err := enmime.ReadHeader(bufio.NewReader(bytes.NewReader(b)), &probs)
		if err != nil || len(probs) > 0 {
			t.Fatalf("plainHeader reads %q, enmime: %v %q", b, err, probs)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("plainHeader(%q) = %q, enmime %q", b, got, want)
		}
	})
}
