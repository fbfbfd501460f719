package hubspot

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/mailpipe/mailpipe/pkg/crm"
	"github.com/mailpipe/mailpipe/pkg/failure"
)

// contactResult is the outcome of one contact upsert.
type contactResult struct {
	id      string
	created bool
	err     error
}

// contactReq is one caller waiting for its contact; done is closed once res is set.
type contactReq struct {
	in   contactInput
	done chan struct{}
	res  contactResult
}

// contactBatcher coalesces the contact upserts of concurrent Upsert calls into batch upserts
// of at most max inputs, without a background goroutine: a caller that finds no batch in
// flight sends everything queued (up to max), the others wait for it. A lone caller sends a
// batch of one at once, so batching adds no latency; under concurrency N a batch carries up to
// N contacts and HubSpot's request budget is spent N times slower.
type contactBatcher struct {
	max   int
	flush func(ctx context.Context, cl *call, reqs []*contactReq)

	mu      sync.Mutex
	pending []*contactReq
	busy    bool
	idle    chan struct{} // closed when the batch in flight ends
}

// upsert queues in and returns its result, sending batches itself while none is in flight.
func (b *contactBatcher) upsert(ctx context.Context, cl *call, in contactInput) contactResult {
	r := &contactReq{in: in, done: make(chan struct{})}
	b.mu.Lock()
	b.pending = append(b.pending, r)
	for {
		select {
		case <-r.done:
			b.mu.Unlock()
			return r.res
		default:
		}
		if !b.busy {
			n := min(len(b.pending), b.max)
			batch := b.pending[:n:n]
			b.pending = b.pending[n:]
			b.busy, b.idle = true, make(chan struct{})
			b.mu.Unlock()

			// The batch serves other callers too: it keeps this caller's values (trace) but
			// not its cancellation; the request timeout bounds it.
			b.flush(context.WithoutCancel(ctx), cl, batch)
			for _, q := range batch {
				close(q.done)
			}

			b.mu.Lock()
			b.busy = false
			close(b.idle)
			continue
		}
		idle := b.idle
		b.mu.Unlock()
		select {
		case <-r.done:
			return r.res
		case <-idle:
		case <-ctx.Done():
			b.mu.Lock()
			if i := slices.Index(b.pending, r); i >= 0 {
				b.pending = slices.Delete(b.pending, i, i+1)
			}
			b.mu.Unlock()
			// Taken into a batch already, the contact may still be written; that is harmless,
			// the upsert is idempotent.
			return contactResult{err: crm.ClassifyTransport(fmt.Errorf("waiting for the contact batch: %w", ctx.Err()))}
		}
		b.mu.Lock()
	}
}

// batchInput is one input of POST /crm/v3/objects/contacts/batch/upsert.
type batchInput struct {
	ID         string            `json:"id"`
	IDProperty string            `json:"idProperty"`
	Properties map[string]string `json:"properties"`
}

// batchResponse is the answer of a batch upsert (200, or 207 when some inputs failed).
type batchResponse struct {
	Status  string `json:"status"`
	Results []struct {
		ID         string             `json:"id"`
		New        bool               `json:"new"`
		Properties map[string]*string `json:"properties"`
	} `json:"results"`
	Errors []struct {
		Category string `json:"category"`
		Message  string `json:"message"`
	} `json:"errors"`
}

// flushContacts upserts the contacts of reqs in one batch call and sets each request's result.
// Requests for the same address share one input (HubSpot rejects duplicate ids in a batch). A
// 400 for a batch of several inputs is retried input by input, so one invalid address fails
// only its own message.
func (c *Connector) flushContacts(ctx context.Context, cl *call, reqs []*contactReq) {
	byEmail := map[string][]*contactReq{}
	var inputs []batchInput
	for _, r := range reqs {
		if _, ok := byEmail[r.in.email]; !ok {
			inputs = append(inputs, batchInput{ID: r.in.email, IDProperty: "email", Properties: r.in.props})
		}
		byEmail[r.in.email] = append(byEmail[r.in.email], r)
	}
	set := func(results map[string]contactResult, err error, inputs []batchInput) {
		for _, in := range inputs {
			res := results[in.ID]
			if err != nil {
				res = contactResult{err: err}
			}
			for _, r := range byEmail[in.ID] {
				r.res = res
			}
		}
	}
	results, err := c.upsertContacts(ctx, cl, inputs)
	if err != nil && statusOf(err) == http.StatusBadRequest && len(inputs) > 1 {
		for _, in := range inputs {
			one := []batchInput{in}
			results, err := c.upsertContacts(ctx, cl, one)
			set(results, err, one)
		}
		return
	}
	set(results, err, inputs)
}

// upsertContacts sends one batch upsert and returns a result per input id; an input HubSpot
// did not upsert (a 207 answer) gets a crm_4xx error with HubSpot's message.
func (c *Connector) upsertContacts(ctx context.Context, cl *call, inputs []batchInput) (map[string]contactResult, error) {
	var resp batchResponse
	err := c.do(ctx, cl, "upserting contacts", http.MethodPost, "/crm/v3/objects/contacts/batch/upsert",
		map[string]any{"inputs": inputs}, &resp)
	if err != nil {
		return nil, err
	}
	out := make(map[string]contactResult, len(inputs))
	for _, r := range resp.Results {
		email := ""
		if p := r.Properties["email"]; p != nil {
			email = strings.ToLower(*p)
		}
		out[email] = contactResult{id: r.ID, created: r.New}
	}
	var missing error
	for _, in := range inputs {
		if _, ok := out[in.ID]; ok {
			continue
		}
		if missing == nil {
			msg := "no result for the input"
			if len(resp.Errors) > 0 {
				msg = resp.Errors[0].Category + ": " + resp.Errors[0].Message
			}
			missing = failure.Wrap(failure.CRM4xx, errors.New("upserting contacts: HubSpot did not upsert the contact: "+msg))
		}
		out[in.ID] = contactResult{err: missing}
	}
	return out, nil
}
