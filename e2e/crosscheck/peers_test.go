package crosscheck_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailpipe/mailpipe/pkg/mime"
)

// The peers, as named in the disagreements list.
const (
	peerMailparser = "mailparser"  // Node mailparser (simpleParser), scripts/node
	peerPostalMime = "postal-mime" // Node postal-mime, scripts/node
	peerRust       = "mail-parser" // Rust stalwartlabs/mail-parser, the corpus' *.expected.json
)

// nodePeers are the peers run by scripts/node/peers.mjs.
var nodePeers = []string{peerMailparser, peerPostalMime}

// record is what one parser read from one message: the fields the cross-check compares.
type record struct {
	OK          bool         `json:"ok"`
	Error       string       `json:"error"`
	Subject     string       `json:"subject"`
	From        *addr        `json:"from"`
	To          []addr       `json:"to"`
	Text        string       `json:"text"`
	Attachments []attachment `json:"attachments"`

	// noText: the peer's text is not known (the Rust output keeps no rendering of an HTML
	// body), so text is not compared.
	noText bool
}

type addr struct {
	Address string `json:"address"`
	Name    string `json:"name"`
}

type attachment struct {
	Filename    string `json:"filename"`
	Size        int64  `json:"size"` // -1: not known (a text or message/rfc822 part in the Rust output)
	SHA256      string `json:"sha256"`
	ContentType string `json:"contentType"`
}

// nodeDir is scripts/node, from this package's directory.
const nodeDir = "../../scripts/node"

// checkNode fails the test when node or the peer parsers are missing: the cross-check is part
// of the test suite, and scripts/deps.sh installs both.
func checkNode(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node not found (%v): run scripts/deps.sh, which installs Node.js and the peer parsers", err)
	}
	for _, m := range []string{"mailparser", "postal-mime"} {
		if _, err := os.Stat(filepath.Join(nodeDir, "node_modules", m, "package.json")); err != nil {
			t.Fatalf("peer parser %s not installed in %s/node_modules: run scripts/deps.sh", m, nodeDir)
		}
	}
	return node
}

// runPeer runs scripts/node/peers.mjs once over every file and returns its records by path.
func runPeer(t *testing.T, node, peer string, files []string) (map[string]record, error) {
	script, err := filepath.Abs(filepath.Join(nodeDir, "peers.mjs"))
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(t.Context(), node, script, peer)
	cmd.Stdin = strings.NewReader(strings.Join(files, "\n") + "\n")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("running peers.mjs %s: %w: %s", peer, err, stderr.String())
	}
	recs := make(map[string]record, len(files))
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		var r struct {
			record
			Path string `json:"path"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("decoding peers.mjs %s output: %w", peer, err)
		}
		recs[r.Path] = r.record
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading peers.mjs %s output: %w", peer, err)
	}
	if len(recs) != len(files) {
		return nil, fmt.Errorf("peers.mjs %s printed %d records for %d files", peer, len(recs), len(files))
	}
	return recs, nil
}

// fromMailpipe is the record of a mailpipe parse.
func fromMailpipe(m *mime.Message, err error) record {
	if err != nil {
		return record{Error: err.Error()}
	}
	r := record{OK: true, Subject: m.Subject, Text: m.Text}
	if m.From != nil {
		r.From = &addr{Address: m.From.Address, Name: m.From.Name}
	}
	for _, a := range m.To {
		r.To = append(r.To, addr{Address: a.Address, Name: a.Name})
	}
	for _, a := range m.Attachments {
		r.Attachments = append(r.Attachments, attachment{Filename: a.Filename, Size: a.Size, SHA256: a.SHA256, ContentType: a.ContentType})
	}
	return r
}

// rustOutput is the part of mail-parser's serialized Message the cross-check reads.
type rustOutput struct {
	TextBody    []int `json:"text_body"`
	Attachments []int `json:"attachments"`
	Parts       []struct {
		Headers []struct {
			Name  json.RawMessage `json:"name"` // "subject", or {"other": "X-Foo"}
			Value json.RawMessage `json:"value"`
		} `json:"headers"`
		Body map[string]json.RawMessage `json:"body"` // one key: Text, Html, Binary, InlineBinary, Message, Multipart
	} `json:"parts"`
}

type rustAddr struct {
	Name    *string `json:"name"`
	Address *string `json:"address"`
}

type rustContentType struct {
	Attributes []struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	} `json:"attributes"`
}

func (c rustContentType) attr(name string) string {
	for _, a := range c.Attributes {
		if strings.EqualFold(a.Name, name) {
			return a.Value
		}
	}
	return ""
}

// rustExpected reads the Rust mail-parser output next to an .eml, if there is one.
func rustExpected(eml string) (record, bool, error) {
	raw, err := os.ReadFile(strings.TrimSuffix(eml, ".eml") + ".expected.json")
	if errors.Is(err, os.ErrNotExist) {
		return record{}, false, nil
	}
	if err != nil {
		return record{}, false, err
	}
	var out rustOutput
	if err := json.Unmarshal(raw, &out); err != nil {
		return record{}, false, fmt.Errorf("decoding %s: %w", eml, err)
	}
	if len(out.Parts) == 0 {
		return record{}, false, fmt.Errorf("%s: no parts", eml)
	}
	r := record{OK: true}
	root := out.Parts[0]
	for _, h := range root.Headers {
		var name string
		_ = json.Unmarshal(h.Name, &name) // {"other": …} leaves it empty
		var v struct {
			Text    *string `json:"Text"`
			Address *struct {
				List  []rustAddr `json:"List"`
				Group []struct {
					Addresses []rustAddr `json:"addresses"`
				} `json:"Group"`
			} `json:"Address"`
		}
		_ = json.Unmarshal(h.Value, &v) // "Empty" and other shapes leave it zero
		switch {
		case name == "subject" && v.Text != nil:
			r.Subject = *v.Text
		case (name == "from" || name == "to") && v.Address != nil:
			var list []addr
			for _, a := range v.Address.List {
				list = append(list, addr{Address: deref(a.Address), Name: deref(a.Name)})
			}
			for _, g := range v.Address.Group {
				for _, a := range g.Addresses {
					list = append(list, addr{Address: deref(a.Address), Name: deref(a.Name)})
				}
			}
			if name == "from" && len(list) > 0 && r.From == nil {
				r.From = &list[0]
			} else if name == "to" {
				r.To = append(r.To, list...)
			}
		}
	}
	// The text body: mail-parser lists the text parts (and inline images between them); an
	// HTML part in the list means the text would be rendered from HTML, which the output does
	// not hold.
	var texts []string
	for _, i := range out.TextBody {
		body := out.Parts[i].Body
		if t, ok := body["Text"]; ok {
			var s string
			if err := json.Unmarshal(t, &s); err != nil {
				return record{}, false, fmt.Errorf("%s: part %d: %w", eml, i, err)
			}
			texts = append(texts, s)
		} else if _, ok := body["Html"]; ok {
			r.noText = true
		}
	}
	r.Text = strings.Join(texts, "\n")
	for _, i := range out.Attachments {
		p := out.Parts[i]
		a := attachment{Size: -1}
		for _, h := range p.Headers {
			var name string
			_ = json.Unmarshal(h.Name, &name)
			var v struct {
				ContentType *rustContentType `json:"ContentType"`
			}
			_ = json.Unmarshal(h.Value, &v)
			if v.ContentType == nil {
				continue
			}
			switch name {
			case "content_disposition":
				if f := v.ContentType.attr("filename"); f != "" {
					a.Filename = f
				}
			case "content_type":
				if f := v.ContentType.attr("name"); f != "" && a.Filename == "" {
					a.Filename = f
				}
			}
		}
		// Only binary bodies are bytes: a text attachment is held as decoded text with LF line
		// ends, and a message/rfc822 one as its parsed structure, so those are compared by
		// name only.
		var content []byte
		for kind, b := range p.Body {
			switch kind {
			case "Binary", "InlineBinary":
				var ints []int
				if err := json.Unmarshal(b, &ints); err != nil {
					return record{}, false, fmt.Errorf("%s: part %d: %w", eml, i, err)
				}
				content = make([]byte, len(ints))
				for j, n := range ints {
					content[j] = byte(n)
				}
			}
		}
		if content != nil {
			sum := sha256.Sum256(content)
			a.Size, a.SHA256 = int64(len(content)), hex.EncodeToString(sum[:])
		}
		r.Attachments = append(r.Attachments, a)
	}
	return r, true, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
