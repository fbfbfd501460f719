package mime

import "github.com/mailpipe/mailpipe/pkg/mailid"

// messageIDs returns the normalized message ids of a Message-ID, In-Reply-To or References
// value, in order, without repeats. Normalization is mailid's, the one the ingress thread key
// and the external id use, so ids compare equal across stages.
func messageIDs(raw string) []string {
	var out []string
	for _, id := range mailid.MessageIDs(raw) {
		if id, _ = validUTF8(id); !contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// firstMessageID returns the first normalized id of a Message-ID or In-Reply-To value, or "".
func firstMessageID(raw string) string {
	id, _ := validUTF8(mailid.MessageID(raw))
	return id
}
