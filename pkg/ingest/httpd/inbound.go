package httpd

import (
	"errors"
	"net/http"
	"net/netip"
	"time"

	"github.com/mailpipe/mailpipe/pkg/events"
	"github.com/mailpipe/mailpipe/pkg/ingest/httpd/mailgun"
	"github.com/mailpipe/mailpipe/pkg/ingest/httpd/sendgrid"
)

// Paths of the provider compatibility endpoints. The Mailgun path ends in "mime" because
// Mailgun posts raw MIME only to a forward() URL that does.
const (
	PathSendGrid = "/v1/inbound/sendgrid"
	PathMailgun  = "/v1/inbound/mailgun/mime"
)

// ProblemUnsupportedMediaType (415) is the problem type of a post that is not the form the
// provider endpoint reads.
const ProblemUnsupportedMediaType = "unsupported-media-type"

// basicChallenge is the WWW-Authenticate of the provider endpoints, which take a key as HTTP
// Basic credentials.
const basicChallenge = `Basic realm="mailpipe"`

// postSendGrid serves [PathSendGrid]: a SendGrid Inbound Parse post with send_raw on. It is
// authenticated by SendGrid's signature when the post carries one, by an API key (Basic
// password or Bearer) otherwise; 200 only after the message is recorded, 503 to make SendGrid
// retry, 4xx for a post that will never be recorded.
func (h *handler) postSendGrid(w http.ResponseWriter, r *http.Request) {
	if !allowPost(w, r) {
		return
	}
	signed := sendgrid.HasSignature(r.Header)
	var tenants []string
	if !signed {
		// Without a signature the key decides before the body is read.
		if tenants = lookupKey(h.creds.apiKeys, bearerOrBasicKey(r)); len(tenants) == 0 {
			unauthorized(w, basicChallenge, "missing or unknown API key, and no SendGrid signature")
			return
		}
	}
	body, p := h.readBody(w, r)
	if p != nil {
		h.fail(w, *p)
		return
	}
	var replayID string
	if signed {
		sig, err := sendgrid.ParseSignature(r.Header, body)
		if err == nil {
			err = sig.CheckTime(h.now(), h.cfg.SendGridTolerance)
		}
		if err != nil {
			unauthorized(w, basicChallenge, err.Error())
			return
		}
		for _, k := range h.creds.sendgrid {
			if sig.VerifiedBy(k.key) {
				tenants = append(tenants, k.tenant)
			}
		}
		if len(tenants) == 0 {
			unauthorized(w, basicChallenge, sendgrid.ErrNoMatch.Error()+" (MAILPIPE_HTTP_"+EnvSendGridPublicKeys+")")
			return
		}
		replayID = sig.ID()
	}
	m, err := sendgrid.ParseForm(body, r.Header.Get("Content-Type"))
	if err != nil {
		h.fail(w, formProblem(err, errors.Is(err, sendgrid.ErrNotForm)))
		return
	}
	env, err := h.buildEnvelope(r, m.MailFrom, m.RcptTo, "envelope.from", "envelope.to")
	if err != nil {
		h.fail(w, problem{http.StatusBadRequest, ProblemBadEnvelope, "Bad envelope", err.Error()})
		return
	}
	if ip, err := netip.ParseAddr(m.SenderIP); err == nil {
		// The client that delivered to SendGrid, which is what smtpd records too; SendGrid's
		// own address says nothing about the message.
		env.ClientIP = ip.Unmap().String()
	}
	h.deliver(w, r, delivery{
		tenants: tenants, env: env, raw: m.Raw, okStatus: http.StatusOK, fail: h.fail,
		replayScheme: "sendgrid", replayID: replayID, replayTTL: 2 * h.cfg.SendGridTolerance,
	})
}

// postMailgun serves [PathMailgun]: a Mailgun route's forward() post of raw MIME. It is
// authenticated by Mailgun's signature fields when the post carries them (and no Authorization
// header), by an API key (Basic password or Bearer) otherwise. Mailgun retries every answer
// but 200 and 406, so every permanent rejection is answered 406 (see failMailgun).
func (h *handler) postMailgun(w http.ResponseWriter, r *http.Request) {
	if !allowPost(w, r) {
		return
	}
	body, p := h.readBody(w, r)
	if p != nil {
		h.failMailgun(w, *p)
		return
	}
	// The signature fields are in the form, so the form is read before authentication.
	post, err := mailgun.ParseForm(body, r.Header.Get("Content-Type"))
	if err != nil {
		h.failMailgun(w, formProblem(err, errors.Is(err, mailgun.ErrNotForm)))
		return
	}
	var (
		tenants  []string
		replayID string
	)
	if r.Header.Get("Authorization") == "" && post.HasSignature() {
		err := post.CheckSignatureFields()
		if err == nil {
			err = post.CheckTime(h.now(), h.cfg.MailgunTolerance)
		}
		if err != nil {
			unauthorized(w, basicChallenge, err.Error())
			return
		}
		for _, k := range h.creds.mailgun {
			if post.VerifiedBy(k.key) {
				tenants = append(tenants, k.tenant)
			}
		}
		if len(tenants) == 0 {
			unauthorized(w, basicChallenge, "no configured signing key verifies the signature (MAILPIPE_HTTP_"+EnvMailgunSigningKeys+")")
			return
		}
		// The token is what is signed (with the timestamp); the message is not.
		replayID = post.Token
	} else if tenants = lookupKey(h.creds.apiKeys, bearerOrBasicKey(r)); len(tenants) == 0 {
		unauthorized(w, basicChallenge, "missing or unknown API key, and no Mailgun signature")
		return
	}
	env, err := h.buildEnvelope(r, post.Sender, []string{post.Recipient}, mailgun.FieldSender, mailgun.FieldRecipient)
	if err != nil {
		h.failMailgun(w, problem{http.StatusBadRequest, ProblemBadEnvelope, "Bad envelope", err.Error()})
		return
	}
	h.deliver(w, r, delivery{
		tenants: tenants, env: env, raw: post.Raw, okStatus: http.StatusOK, fail: h.failMailgun,
		replayScheme: "mailgun", replayID: replayID, replayTTL: 2 * h.cfg.MailgunTolerance,
	})
}

// failMailgun writes p with Mailgun's codes: a permanent rejection (4xx other than 401 and 403)
// becomes 406, the one code on which Mailgun gives up without counting the post as delivered.
// 401 and 403 stay: they mean a key or route is misconfigured here, and Mailgun's 8 hours of
// retries give the operator time to fix it without losing the message.
func (h *handler) failMailgun(w http.ResponseWriter, p problem) {
	if p.status >= 400 && p.status < 500 && p.status != http.StatusUnauthorized && p.status != http.StatusForbidden {
		p.status = http.StatusNotAcceptable
	}
	h.fail(w, p)
}

// formProblem is the answer to a provider post that could not be read as its form.
func formProblem(err error, notForm bool) problem {
	if notForm {
		return problem{http.StatusUnsupportedMediaType, ProblemUnsupportedMediaType, "Unsupported media type", err.Error()}
	}
	return problem{http.StatusBadRequest, ProblemBadBody, "Malformed form", err.Error()}
}

// delivery is an authenticated provider post ready to be recorded.
type delivery struct {
	tenants  []string // tenants of the credential
	env      events.Envelope
	raw      []byte
	okStatus int
	fail     func(http.ResponseWriter, problem)
	// replayID identifies a signed post; "" for a post authenticated by API key.
	replayScheme, replayID string
	replayTTL              time.Duration
}

// deliver checks the recipients against the credential's tenants and records the message,
// once per replay id when there is one.
func (h *handler) deliver(w http.ResponseWriter, r *http.Request, d delivery) {
	if len(d.raw) == 0 {
		d.fail(w, problem{http.StatusBadRequest, ProblemEmptyMessage, "Empty message", "the post carries an empty message"})
		return
	}
	tenant, p := h.authorize(d.tenants, d.env.RcptTo)
	if p != nil {
		d.fail(w, *p)
		return
	}
	limit, p := h.routePolicy(d.env)
	if p == nil && int64(len(d.raw)) > limit {
		p = tooLarge(limit)
	}
	if p != nil {
		d.fail(w, *p)
		return
	}
	if d.replayID != "" {
		h.recordOnce(w, r, replayKey(d.replayScheme, tenant, d.replayID), d.replayTTL, d.okStatus, d.fail, d.env, d.raw)
		return
	}
	res, p := h.record(r, d.env, d.raw)
	if p != nil {
		d.fail(w, *p)
		return
	}
	writeAccepted(w, d.okStatus, res)
}
