package role_test

import (
	"testing"

	"github.com/mailpipe/mailpipe/pkg/enrich/role"
)

func TestOf(t *testing.T) {
	for _, tt := range []struct {
		addr string
		want string
	}{
		{"info@acme.example", role.Info},
		{"INFO@acme.example", role.Info},
		{"hello@acme.example", role.Info},
		{"sales@acme.example", role.Sales},
		{"sales+emea@acme.example", role.Sales},
		{"vertrieb@acme.de", role.Sales},
		{"support@acme.example", role.Support},
		{"support2@acme.example", role.Support},
		{"customer.service@acme.example", role.Support},
		{"noreply@acme.example", role.NoReply},
		{"no-reply@acme.example", role.NoReply},
		{"No_Reply@acme.example", role.NoReply},
		{"do-not-reply@acme.example", role.NoReply},
		{"noreply-7f3a9c@notifications.acme.example", role.NoReply},
		{"bounces+1234-abc@mail.acme.example", role.NoReply},
		{"admin@acme.example", role.Admin},
		{"webmaster@acme.example", role.Admin},
		{"postmaster@acme.example", role.Postmaster},
		{"MAILER-DAEMON@mx.acme.example", role.Postmaster},
		{"billing@acme.example", role.Billing},
		{"accounts.payable@acme.example", role.Billing},
		{"hr@acme.example", role.HR},
		{"careers@acme.example", role.HR},
		{"press@acme.example", role.Marketing},
		{"privacy@acme.example", role.Legal},
		{"abuse@acme.example", role.Security},
		{"notifications@github.example", role.Notifications},
		{`"info"@acme.example`, role.Info},
		{"sales", role.Sales}, // a bare local part
		// people
		{"ann@acme.example", ""},
		{"ann.smith@acme.example", ""},
		{"anna@acme.example", ""},
		{"support.jane@acme.example", ""}, // exact matches only
		{"salesforce-admin-jo@acme.example", ""},
		{"12345@acme.example", ""},
		{"", ""},
	} {
		got, ok := role.Of(tt.addr)
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("Of(%q) = %q, %v; want %q", tt.addr, got, ok, tt.want)
		}
	}
}
