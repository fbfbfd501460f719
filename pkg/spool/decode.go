package spool

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"mime/quotedprintable"
	"os"
	"strconv"
	"strings"
)

// spool streams the body of a leaf (its first bytes in s.body, the rest still in br) into a new
// temporary file, decoded, and adds the part to the result.
func (s *splitter) spool(h *header, id, mtype string, br *bodyReader) (err error) {
	f, err := os.CreateTemp(s.opt.TempDir, "mailpipe-spool-*")
	if err != nil {
		return fmt.Errorf("creating spool file: %w", err)
	}
	s.res.files = append(s.res.files, f.Name())
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("closing spool file: %w", cerr)
		}
	}()

	w := &spoolWriter{f: f, sum: sha256.New(), budget: &s.budget}
	src := io.MultiReader(bytes.NewReader(s.body.Bytes()), br)
	enc := strings.ToLower(h.cte)
	var (
		dec io.Reader
		b64 *b64Reader
	)
	switch enc {
	case "base64":
		b64 = newB64Reader(src)
		dec = b64
	case "quoted-printable":
		// enmime's pipeline: its QP cleaner, then the standard decoder.
		dec = quotedprintable.NewReader(newQPCleaner(src))
	default:
		// 7bit, 8bit, binary, none, or unknown (which enmime leaves undecoded too).
		enc = ""
		dec = readerOnly{src}
	}
	if s.copyBuf == nil {
		s.copyBuf = make([]byte, 32<<10)
	}
	_, cerr := io.CopyBuffer(w, dec, s.copyBuf)
	switch {
	case br.err != nil:
		return br.err
	case w.err != nil:
		return fmt.Errorf("writing spool file: %w", w.err)
	case cerr != nil:
		s.warn(WarnQuotedPrintable, true, "part %s: %s; the rest of the part was dropped", id, cerr)
	}
	// Whatever the decoder left (after an error) still belongs to the part.
	if _, err := io.CopyBuffer(io.Discard, readerOnly{br}, s.copyBuf); err != nil {
		return err
	}

	n := len(s.res.Parts)
	p := Part{
		PartID:      id,
		ContentType: mtype,
		Encoding:    enc,
		EncodedSize: br.n,
		Size:        w.size,
		SHA256:      hex.EncodeToString(w.sum.Sum(nil)),
		Head:        w.head,
		Truncated:   w.dropped > 0,
		path:        f.Name(),
	}
	if b64 != nil && b64.junk > 0 {
		s.warn(WarnBase64Junk, false, "part %s: skipped %d bytes that are not base64 (first %q)", id, b64.junk, b64.firstJunk)
	}
	if b64 != nil && b64.dangling {
		s.warn(WarnBase64Incomplete, false, "part %s: base64 ends with a lone character; dropped", id)
	}
	if p.Truncated {
		s.warn(WarnLimitDecodedSize, true, "part %s: decoded content exceeds %d bytes over the spooled parts; %d bytes dropped", id, s.opt.MaxDecodedSize, w.dropped)
	}
	s.res.Parts = append(s.res.Parts, p)

	if s.res.token == "" {
		s.res.token = newToken()
	}
	field := Header + ": " + strconv.Itoa(n) + " " + s.res.token
	s.skel.WriteString(field)
	// What follows the part must stay out of the first 4 KiB of every enclosing part in the
	// skeleton, as it was in the input (see leaf): pad the field with blanks, which enmime trims.
	after := s.skel.Len() + 2*len(h.blank) + len(br.held())
	pad := 0
	for _, lv := range s.stack[:max(len(s.stack)-1, 0)] {
		if lv.state == inPart && !lv.discard {
			pad = max(pad, lv.skelStart+partStartWindow-after)
		}
	}
	for range pad {
		s.skel.WriteByte(' ')
	}
	s.skel.Write(h.blank) // the same line break as the block's
	s.skel.Write(h.blank)
	s.skel.Write(br.held())
	return nil
}

// readerOnly hides the WriterTo of a reader, so io.CopyBuffer uses the given buffer.
type readerOnly struct{ io.Reader }

// bodyReader reads the body of a leaf up to the end of its stream: a boundary line (left in
// s.stop) or the end of the input. Like enmime's boundaryReader, it leaves out the line break
// before the boundary line: each line break is held back until the next line is known not to
// be a boundary, and held() returns the one left out.
type bodyReader struct {
	s      *splitter
	pre    []byte // released line break, delivered before cur
	cur    []byte // rest of the current chunk
	preBuf [2]byte
	hold   [2]byte
	nhold  int
	done   bool  // the end of the body was reached (pre and cur may still hold bytes)
	n      int64 // bytes delivered
	end    int64 // input offset where the body ended at a boundary; -1 at the end of input
	err    error
}

func (r *bodyReader) held() []byte { return r.hold[:r.nhold] }

// exhausted reports whether the whole body has been read.
func (r *bodyReader) exhausted() bool { return r.done && len(r.pre) == 0 && len(r.cur) == 0 }

func (r *bodyReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(r.pre) > 0 {
			c := copy(p[n:], r.pre)
			r.pre = r.pre[c:]
			n += c
			continue
		}
		if len(r.cur) > 0 {
			c := copy(p[n:], r.cur)
			r.cur = r.cur[c:]
			n += c
			continue
		}
		if r.done || r.err != nil {
			break
		}
		c, err := r.s.next()
		if errors.Is(err, io.EOF) {
			// No boundary follows: the last line break is the body's.
			r.s.eof = true
			r.done = true
			r.preBuf = r.hold
			r.pre = r.preBuf[:r.nhold]
			r.nhold = 0
			continue
		}
		if err != nil {
			r.err = err
			break
		}
		if c.hit.ok {
			if c.hit.cut() {
				// Cut in the middle of a line: the line break before it is the body's.
				r.preBuf = r.hold
				r.pre = r.preBuf[:r.nhold]
				r.nhold = 0
				r.cur = c.before()
			}
			r.end = r.s.chunkOff + int64(c.hit.at) - int64(r.nhold)
			r.s.setStop(c)
			r.done = true
			continue
		}
		r.preBuf = r.hold
		r.pre = r.preBuf[:r.nhold]
		t := 0
		if c.kind == chunkLine {
			t = eolLen(c.b)
		}
		r.cur = c.b[:len(c.b)-t]
		r.nhold = copy(r.hold[:], c.b[len(c.b)-t:])
	}
	r.n += int64(n)
	if n == 0 {
		if r.err != nil {
			return 0, r.err
		}
		if r.done {
			return 0, io.EOF
		}
	}
	return n, nil
}

// spoolWriter writes decoded bytes to a spool file while hashing them, counting them and keeping
// the first HeadSize, within the decoded-size budget shared by the parts of a message. Bytes
// beyond the budget are counted and dropped.
type spoolWriter struct {
	f       *os.File
	sum     hash.Hash
	budget  *int64
	size    int64
	dropped int64
	head    []byte
	err     error
}

func (w *spoolWriter) Write(p []byte) (int, error) {
	keep := p[:min(int64(len(p)), *w.budget)]
	if len(keep) > 0 {
		if _, err := w.f.Write(keep); err != nil {
			w.err = err
			return 0, err
		}
		w.sum.Write(keep)
		w.size += int64(len(keep))
		*w.budget -= int64(len(keep))
		if len(w.head) < HeadSize {
			w.head = append(w.head, keep[:min(len(keep), HeadSize-len(w.head))]...)
		}
	}
	w.dropped += int64(len(p) - len(keep))
	return len(p), nil
}

// b64Class classifies bytes for base64 decoding as enmime's Base64Cleaner does: 0 alphabet,
// 1 skipped silently (white space and '=', so padding in the middle of concatenated base64 is
// ignored the same way), 2 skipped and reported. enmime passes bytes above 0x7f whose low seven
// bits are in the alphabet on to the decoder, which then fails; they are junk here.
var b64Class = func() (t [256]uint8) {
	for i := range t {
		t[i] = 2
	}
	for _, c := range []byte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/") {
		t[c] = 0
	}
	for _, c := range []byte("\t\n\r =") {
		t[c] = 1
	}
	return t
}()

// b64Reader decodes base64 leniently: everything outside the alphabet is skipped, and the
// alphabet characters are decoded as one unpadded stream (base64.RawStdEncoding), which is what
// enmime's cleaner plus base64.NewDecoder do.
type b64Reader struct {
	src       io.Reader
	in        []byte // alphabet characters, the first nin carried over from the last read
	nin       int
	obuf, out []byte
	eof       bool
	junk      int64
	firstJunk byte
	dangling  bool
}

func newB64Reader(src io.Reader) *b64Reader {
	return &b64Reader{src: src, in: make([]byte, 32<<10), obuf: make([]byte, 24<<10)}
}

func (d *b64Reader) Read(p []byte) (int, error) {
	for len(d.out) == 0 {
		if d.eof {
			return 0, io.EOF
		}
		n, err := d.src.Read(d.in[d.nin:])
		m := d.nin + d.clean(d.in[d.nin:d.nin+n])
		switch {
		case errors.Is(err, io.EOF):
			d.eof = true
		case err != nil:
			return 0, err
		}
		q := m &^ 3
		if d.eof {
			q = m
			if m%4 == 1 {
				d.dangling = true // 6 bits, not a byte
				q--
			}
		}
		k, derr := base64.RawStdEncoding.Decode(d.obuf, d.in[:q])
		if derr != nil {
			return 0, fmt.Errorf("decoding base64: %w", derr) // cannot happen: input is clean
		}
		d.out = d.obuf[:k]
		d.nin = copy(d.in, d.in[q:m])
		if d.eof {
			d.nin = 0
		}
	}
	n := copy(p, d.out)
	d.out = d.out[n:]
	return n, nil
}

// clean compacts the alphabet characters of b to its front and returns their count.
func (d *b64Reader) clean(b []byte) int {
	k := 0
	for _, c := range b {
		switch b64Class[c] {
		case 0:
			b[k] = c
			k++
		case 2:
			if d.junk == 0 {
				d.firstJunk = c
			}
			d.junk++
		}
	}
	return k
}

// maxQPLineLen is enmime's coding.MaxQPLineLen: the cleaner breaks longer lines with a soft line
// break, which keeps the standard decoder's line buffer from overflowing.
const maxQPLineLen = 1024

// qpCleaner is enmime's coding.QPCleaner: it escapes what would make the standard
// quoted-printable decoder fail ('=' not followed by two hex digits or a line break, control and
// 8-bit bytes) and breaks over-long lines. Unlike enmime's, it never drops a byte when a forced
// line break fills the caller's buffer.
type qpCleaner struct {
	in      *bufio.Reader
	lineLen int
	buf     []byte
	out     []byte
	err     error
}

func newQPCleaner(r io.Reader) *qpCleaner {
	return &qpCleaner{in: bufio.NewReader(r), buf: make([]byte, 0, 4096+8)}
}

func (c *qpCleaner) Read(p []byte) (int, error) {
	for len(c.out) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		c.fill()
	}
	n := copy(p, c.out)
	c.out = c.out[n:]
	return n, nil
}

const hexDigits = "0123456789ABCDEF"

func (c *qpCleaner) fill() {
	out := c.buf[:0]
	softBreak := func() {
		out = append(out, '=', '\r', '\n')
		c.lineLen = 0
	}
	for len(out) < 4096 {
		b, err := c.in.ReadByte()
		if err != nil {
			c.err = err
			break
		}
		if c.lineLen >= maxQPLineLen {
			softBreak()
		}
		switch {
		case b == '=':
			if c.lineLen+2 >= maxQPLineLen {
				softBreak()
			}
			next, err := c.in.Peek(2)
			if err != nil && !errors.Is(err, io.EOF) {
				c.err = err
			}
			if qpEscape(next) {
				out = append(out, '=')
				c.lineLen++
			} else {
				out = append(out, '=', '3', 'D')
				c.lineLen += 3
			}
		case b == '\t':
			out = append(out, b)
			c.lineLen++
		case b == '\r' || b == '\n':
			out = append(out, b)
			c.lineLen = 0
		case b < ' ' || b > '~':
			if c.lineLen+2 >= maxQPLineLen {
				softBreak()
			}
			out = append(out, '=', hexDigits[b>>4], hexDigits[b&15])
			c.lineLen += 3
		default:
			out = append(out, b)
			c.lineLen++
		}
	}
	c.out = out
	c.buf = out[:0]
}

// qpEscape reports whether the bytes after '=' make a valid escape or soft line break.
func qpEscape(v []byte) bool {
	if len(v) > 0 && v[0] == '\n' {
		return true
	}
	if len(v) < 2 {
		return false
	}
	if v[0] == '\r' && v[1] == '\n' {
		return true
	}
	return isHex(v[0]) && isHex(v[1])
}

func isHex(b byte) bool {
	return '0' <= b && b <= '9' || 'A' <= b && b <= 'F' || 'a' <= b && b <= 'f'
}
