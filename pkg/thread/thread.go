// Package thread derives a message's thread key: the normalized Message-ID of the root of its
// conversation, which every topic is keyed by so one conversation stays on one partition and a
// reply is never written to a CRM before the message it answers.
//
// Derivation order (ARCHITECTURE.md, "Keys and ordering"):
//
//  1. the first id in References (the root, when mailers keep the list as RFC 5322 asks),
//     resolved through the Index: a mailer that trimmed References from the front (keeping the
//     last few ids) names a reply there, whose thread key the Index holds;
//  2. else the first id in In-Reply-To, resolved through the Index to its thread key, or, when
//     the index does not know it, the parent's id itself (a parent without References was a root);
//  3. else the message's own Message-ID;
//  4. else a synthetic id, SyntheticID, derived from sender, date, subject and body digest.
//
// Headers are taken raw, as they appear in the message, so ingress (headers only) and the parser
// derive the same key. The package is pure domain logic: the Index is an interface, with a Redis
// implementation in redisthread.
package thread

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"

	"github.com/mailpipe/mailpipe/pkg/mailid"
)

// SyntheticPrefix starts every synthetic id, so consumers can tell it from a real Message-ID.
const SyntheticPrefix = "synthetic:"

// Headers are the raw header values thread keys are derived from; missing headers are "".
type Headers struct {
	MessageID  string
	InReplyTo  string
	References string
	From       string
	Date       string
	Subject    string
	// BodyDigest identifies the body for synthetic ids, typically hex sha256 of the body bytes
	// after the header block. Any stable string works, as long as all producers of the same
	// message use the same one.
	BodyDigest string
}

// FromMail picks the headers from a parsed header block (net/mail or textproto canonical keys).
func FromMail(h mail.Header, bodyDigest string) Headers {
	return Headers{
		MessageID:  h.Get("Message-Id"),
		InReplyTo:  strings.Join(h["In-Reply-To"], " "),
		References: strings.Join(h["References"], " "), // a repeated header is one list
		From:       h.Get("From"),
		Date:       h.Get("Date"),
		Subject:    h.Get("Subject"),
		BodyDigest: bodyDigest,
	}
}

// Source says which rule produced a key.
type Source string

// Sources, in derivation order.
const (
	SourceReferences Source = "references"  // first id of References, not in the Index: the root
	SourceIndex      Source = "index"       // first id of References or In-Reply-To resolved through the Index
	SourceInReplyTo  Source = "in_reply_to" // In-Reply-To not in the Index (or no Index): the parent's id
	SourceMessageID  Source = "message_id"  // own Message-ID: the message is a root
	SourceSynthetic  Source = "synthetic"   // no usable id: SyntheticID
)

// Result is a derived thread key.
type Result struct {
	// Key is the thread key: a normalized Message-ID, or a synthetic id. Never empty.
	Key    string
	Source Source
	// MessageID is the message's own normalized Message-ID, or its synthetic id when it has
	// none; use it for mailid.ExternalID.
	MessageID string
}

// Index maps message ids to thread keys across messages, so a reply that carries only
// In-Reply-To finds the root of its parent's conversation. Implementations must be safe for
// concurrent use.
type Index interface {
	// Lookup returns the thread key remembered for msgID, with found == false when none is.
	Lookup(ctx context.Context, msgID string) (threadKey string, found bool, err error)
	// Remember records that msgID belongs to threadKey.
	Remember(ctx context.Context, msgID, threadKey string) error
}

// Key derives h's thread key; idx may be nil (headers only). When the message has its own
// Message-ID and belongs to another message's thread, Key remembers that mapping in idx, so its
// replies can find the thread even without References; a root is not written (a reply falling
// back to its parent's id arrives at the same key). What is remembered is always the key Key
// returned, even after a failed lookup: a reply must follow the partition its parent actually
// went to, right or wrong, or it could overtake it.
//
// An index error does not stop derivation: Key returns the header-only result together with the
// error, so the caller can log or count it and still use the Result, which is always complete.
func Key(ctx context.Context, h Headers, idx Index) (Result, error) {
	res := Result{MessageID: mailid.MessageID(h.MessageID)}
	if res.MessageID == "" {
		res.MessageID = SyntheticID(h)
	}
	var idxErr error
	switch refs, parents := mailid.MessageIDs(h.References), mailid.MessageIDs(h.InReplyTo); {
	case len(refs) > 0:
		res.Key, res.Source = refs[0], SourceReferences
		idxErr = resolve(ctx, idx, &res)
	case len(parents) > 0:
		res.Key, res.Source = parents[0], SourceInReplyTo
		idxErr = resolve(ctx, idx, &res)
	default:
		res.Key, res.Source = res.MessageID, SourceMessageID
		if strings.HasPrefix(res.Key, SyntheticPrefix) {
			res.Source = SourceSynthetic
		}
	}
	if idx != nil && res.Key != res.MessageID && !strings.HasPrefix(res.MessageID, SyntheticPrefix) {
		if err := idx.Remember(ctx, res.MessageID, res.Key); err != nil {
			idxErr = errors.Join(idxErr, fmt.Errorf("remembering thread of %q: %w", res.MessageID, err))
		}
	}
	return res, idxErr
}

// resolve replaces res.Key, an ancestor's id, with the thread key the index holds for it. Roots
// are not in the index (Key does not write them), so a miss leaves the id, which is then the root.
func resolve(ctx context.Context, idx Index, res *Result) error {
	if idx == nil {
		return nil
	}
	key, found, err := idx.Lookup(ctx, res.Key)
	switch {
	case err != nil:
		return fmt.Errorf("looking up thread of %q: %w", res.Key, err)
	case found && key != "":
		res.Key, res.Source = key, SourceIndex
	}
	return nil
}

// SyntheticID returns the deterministic id for a message without a usable Message-ID:
//
//	"synthetic:" + hex(sha256( Address(From) \n date \n subject \n BodyDigest ))
//
// where Address is mailid.Address, date is the Date header as RFC 3339 in UTC when it parses
// (else the raw value with whitespace collapsed), and subject is the raw Subject with whitespace
// collapsed (encoded words are not decoded: ingress and parser must agree byte for byte). The
// same message retried by its sender gets the same id; two different messages collide only if
// sender, date, subject and body all match, which makes them the same message for our purposes.
func SyntheticID(h Headers) string {
	date := collapse(h.Date)
	if t, err := mail.ParseDate(date); err == nil {
		date = t.UTC().Format(time.RFC3339)
	}
	sum := sha256.Sum256([]byte(mailid.Address(h.From) + "\n" + date + "\n" + collapse(h.Subject) + "\n" + h.BodyDigest))
	return SyntheticPrefix + hex.EncodeToString(sum[:])
}

// collapse trims s and turns every run of whitespace (including folding) into one space.
func collapse(s string) string { return strings.Join(strings.Fields(s), " ") }
