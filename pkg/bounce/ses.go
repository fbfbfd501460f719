package bounce

import (
	"encoding/json"
	"strings"
)

// sesNotification is the part of an Amazon SES event (delivered by SNS to an e-mail
// subscription) that a bounce needs.
type sesNotification struct {
	NotificationType string `json:"notificationType"`
	EventType        string `json:"eventType"`
	Bounce           struct {
		BounceType        string `json:"bounceType"`
		ReportingMTA      string `json:"reportingMTA"`
		BouncedRecipients []struct {
			EmailAddress   string `json:"emailAddress"`
			Action         string `json:"action"`
			Status         string `json:"status"`
			DiagnosticCode string `json:"diagnosticCode"`
		} `json:"bouncedRecipients"`
	} `json:"bounce"`
	Delivery struct {
		Recipients   []string `json:"recipients"`
		SMTPResponse string   `json:"smtpResponse"`
		ReportingMTA string   `json:"reportingMTA"`
	} `json:"delivery"`
}

// detectSES reads Amazon SES bounce and delivery notifications. SES sends them as JSON, in the
// body of an SNS "AWS Notification Message" either directly or wrapped in the SNS envelope's
// "Message" string.
func detectSES(in *input) *Bounce {
	if !strings.Contains(in.text, "notificationType") && !strings.Contains(in.text, "eventType") {
		return nil
	}
	n, ok := parseSES(in.text)
	if !ok {
		return nil
	}
	kind := firstNonEmpty(n.NotificationType, n.EventType)
	b := &Bounce{Format: "amazonses-sns"}
	switch kind {
	case "Bounce":
		b.ReportingMTA = stripType(n.Bounce.ReportingMTA)
		for _, br := range n.Bounce.BouncedRecipients {
			r := Recipient{
				Address:    strings.ToLower(strings.TrimSpace(br.EmailAddress)),
				Action:     firstNonEmpty(strings.ToLower(br.Action), "failed"),
				Status:     statusCode(br.Status),
				Diagnostic: oneLine(stripType(br.DiagnosticCode)),
			}
			r.Severity = severity(r.Action, r.Status, r.Diagnostic, false)
			if r.Status == "" && r.Severity == Hard && n.Bounce.BounceType == "Transient" {
				r.Severity = Soft // SES's own classification when the MTA gave no code
			}
			b.Recipients = append(b.Recipients, r)
			b.Evidence = append(b.Evidence, "SES "+n.Bounce.BounceType+" bounce status "+r.Status+" for "+r.Address)
		}
	case "Delivery":
		b.ReportingMTA = n.Delivery.ReportingMTA
		for _, a := range n.Delivery.Recipients {
			r := Recipient{
				Address:    strings.ToLower(a),
				Action:     "delivered",
				Status:     statusCode(n.Delivery.SMTPResponse),
				Diagnostic: n.Delivery.SMTPResponse,
				Severity:   NoFailure,
			}
			b.Recipients = append(b.Recipients, r)
			b.Evidence = append(b.Evidence, "SES delivery notification for "+r.Address)
		}
	}
	if len(b.Recipients) == 0 {
		return nil
	}
	b.Evidence = append([]string{"body: Amazon SES " + kind + " notification"}, b.Evidence...)
	return b
}

func parseSES(text string) (sesNotification, bool) {
	var n sesNotification
	start := strings.IndexByte(text, '{')
	end := strings.LastIndexByte(text, '}')
	if start < 0 || end <= start {
		return n, false
	}
	// Mail gateways wrap SNS's one-line JSON; JSON strings cannot hold raw line breaks, so
	// dropping them restores the document.
	raw := strings.ReplaceAll(text[start:end+1], "\n", "")
	var envelope struct {
		Type    string `json:"Type"`
		Message string `json:"Message"`
	}
	if json.Unmarshal([]byte(raw), &envelope) == nil && envelope.Message != "" {
		raw = envelope.Message
	}
	if err := json.Unmarshal([]byte(raw), &n); err != nil {
		return n, false
	}
	return n, n.NotificationType != "" || n.EventType != ""
}
