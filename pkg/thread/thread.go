// Package thread derives a message's thread key: the normalized Message-ID of the root of its
// conversation, which every topic is keyed by so one conversation stays on one partition and a
// reply is never written to a CRM before the message it answers.
//
// Derivation order (ARCHITECTURE.md, "Keys and ordering", refined by docs/adr/0004):
//
//  1. the parent's thread key, when the Index knows the parent (the first id of In-Reply-To,
//     else the last of References): a reply then always lands where the message it answers
//     went, even when the two disagree with References (a conversation split earlier by a
//     mailer that dropped the headers), so it can never overtake it;
//  2. else the first id in References (the root, when mailers keep the list as RFC 5322 asks),
//     itself resolved through the Index: a mailer that trimmed References from the front names a
//     reply there, whose thread key the Index holds;
//  3. else the first id in In-Reply-To, the parent's id itself (a parent the Index does not know
//     was a root, or was never seen);
//  4. else the message's own Message-ID;
//  5. else a synthetic id, SyntheticID, derived from sender, date, subject and body digest.
//
// Roots are not written to the Index, so for a reply to a root rules 1 and 2 look up the same id
// once and fall through to the id itself.
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
	SourceIndex      Source = "index"       // the parent, or the first id of References, resolved through the Index
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
	refs, parents := mailid.MessageIDs(h.References), mailid.MessageIDs(h.InReplyTo)
	parent := ""
	switch {
	case len(parents) > 0:
		parent = parents[0]
	case len(refs) > 0:
		parent = refs[len(refs)-1]
	}
	var idxErr error
	var parentKnown bool
	if parent != "" {
		parentKnown, idxErr = resolve(ctx, idx, parent, &res)
	}
	switch {
	case parentKnown:
	case len(refs) > 0:
		res.Key, res.Source = refs[0], SourceReferences
		if refs[0] != parent { // a miss for the parent is a miss for the same id again
			_, err := resolve(ctx, idx, refs[0], &res)
			idxErr = errors.Join(idxErr, err)
		}
	case len(parents) > 0:
		res.Key, res.Source = parent, SourceInReplyTo
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

// resolve sets res.Key to the thread key the index holds for id and reports whether it held one.
// Roots are not in the index (Key does not write them).
func resolve(ctx context.Context, idx Index, id string, res *Result) (bool, error) {
	if idx == nil {
		return false, nil
	}
	key, found, err := idx.Lookup(ctx, id)
	switch {
	case err != nil:
		return false, fmt.Errorf("looking up thread of %q: %w", id, err)
	case found && key != "":
		res.Key, res.Source = key, SourceIndex
		return true, nil
	}
	return false, nil
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
