package ingest

import (
	"context"
	"log/slog"

	"github.com/mailpipe/mailpipe/pkg/thread"
)

// threadKey derives the record key from the header block. It returns the derivation (Key is the
// thread key, MessageID the message's normalized or synthetic id) and the index entries to write
// once the record is acknowledged.
//
// thread.Key writes a reply's Message-ID → thread key mapping while it derives; ingest holds
// those writes back until the produce succeeded, so a message the broker never acknowledged
// leaves nothing behind in the index. An index error degrades to header-only derivation (the
// result is still complete) and is logged: a Redis error means "not known".
func (in *Ingester) threadKey(ctx context.Context, h thread.Headers) (thread.Result, []indexEntry) {
	var idx thread.Index
	var held *heldIndex
	if in.index != nil {
		held = &heldIndex{Index: in.index}
		idx = held
	}
	res, err := thread.Key(ctx, h, idx)
	if err != nil {
		in.log.WarnContext(ctx, "thread index unavailable, thread key from headers only",
			slog.String("thread_key", res.Key), slog.String("error", err.Error()))
	}
	var pending []indexEntry
	if held != nil {
		pending = held.pending
	}
	return res, pending
}

// remember writes the held index entries after the record was acknowledged. A failure only
// means a later reply carrying just In-Reply-To may start its own key, so it is logged.
func (in *Ingester) remember(ctx context.Context, pending []indexEntry) {
	for _, e := range pending {
		if err := in.index.Remember(ctx, e.msgID, e.threadKey); err != nil {
			in.log.WarnContext(ctx, "could not remember thread of accepted message",
				slog.String("message_id", e.msgID), slog.String("thread_key", e.threadKey), slog.String("error", err.Error()))
		}
	}
}

type indexEntry struct{ msgID, threadKey string }

// heldIndex passes lookups through and holds writes back.
type heldIndex struct {
	thread.Index
	pending []indexEntry
}

func (x *heldIndex) Remember(_ context.Context, msgID, threadKey string) error {
	x.pending = append(x.pending, indexEntry{msgID: msgID, threadKey: threadKey})
	return nil
}
