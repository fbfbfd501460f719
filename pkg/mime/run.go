package mime

import (
	"bufio"
	"bytes"
	"io"

	"github.com/jhillyerd/enmime/v2"
)

// run is the state of one Parse call, shared with the nested messages it describes. A Parser
// is safe for concurrent use because it keeps this state per call; a run is used by one
// goroutine at a time, and goes back to the Parser's pool after the call, emptied, so that
// the next call does not allocate it again (its buffer is 4 KiB, a bounce is about as large).
type run struct {
	// enmime is the parser's enmime configuration with the run's memoizing media-type hook.
	enmime *enmime.Parser
	media  map[string]mediaType
	// buf and src feed enmime: ReadParts wraps any reader but a *bufio.Reader in a new 4 KiB
	// one, and split calls it once per part.
	buf *bufio.Reader
	src bytes.Reader
	// tmpl is a container part enmime read, copied for the containers split builds (see
	// containerPart); nil until needed.
	tmpl *enmime.Part
}

// mediaType is one result of parseMediaType.
type mediaType struct {
	mtype   string
	params  map[string]string
	invalid []string
	err     error
}

// maxMemoMediaTypes bounds the media types a run remembers (a message of many parts has many
// file names).
const maxMemoMediaTypes = 512

// getRun returns a run from the pool, or a new one.
func (p *Parser) getRun() *run {
	if r, ok := p.runs.Get().(*run); ok {
		return r
	}
	return p.newRun()
}

// putRun empties r, keeping nothing of the message it read, and returns it to the pool.
func (p *Parser) putRun(r *run) {
	clear(r.media)
	r.src.Reset(nil)
	if r.buf != nil {
		r.buf.Reset(nil)
	}
	p.runs.Put(r)
}

func (p *Parser) newRun() *run {
	r := &run{media: make(map[string]mediaType)}
	opts := append(p.enmimeOpts[:len(p.enmimeOpts):len(p.enmimeOpts)], enmime.SetCustomParseMediaType(r.parseMediaType))
	r.enmime = enmime.NewParser(opts...)
	return r
}

// parseMediaType is parseMediaType, memoized: enmime parses the Content-Type and
// Content-Disposition of a part up to six times (reading its header, deciding whether it is
// multipart, text or an attachment, building the envelope), and prescan and split once more
// each; the parsing was a sixth of the parser's time. The results are shared: callers must not
// modify the params map or the invalid slice.
func (r *run) parseMediaType(ctype string) (string, map[string]string, []string, error) {
	if m, ok := r.media[ctype]; ok {
		return m.mtype, m.params, m.invalid, m.err
	}
	mtype, params, invalid, err := parseMediaType(ctype)
	if len(r.media) < maxMemoMediaTypes {
		r.media[ctype] = mediaType{mtype: mtype, params: params, invalid: invalid, err: err}
	}
	return mtype, params, invalid, err
}

// readEnmime returns enmime's part tree of b.
func (r *run) readEnmime(b []byte) (*enmime.Part, error) {
	r.src.Reset(b)
	return r.readFrom(&r.src)
}

// readEnmimeJoined returns enmime's part tree of the message made of head and then body,
// without copying them together.
func (r *run) readEnmimeJoined(head, body []byte) (*enmime.Part, error) {
	return r.readFrom(io.MultiReader(bytes.NewReader(head), bytes.NewReader(body)))
}

func (r *run) readFrom(src io.Reader) (*enmime.Part, error) {
	if r.buf == nil {
		r.buf = bufio.NewReader(src)
	} else {
		r.buf.Reset(src)
	}
	return r.enmime.ReadParts(r.buf)
}
