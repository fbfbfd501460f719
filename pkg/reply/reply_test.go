package reply_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mailpipe/mailpipe/pkg/reply"
)

func TestStrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", ""},
		{"no history", "Hi Anna,\n\nsounds good.\n\nBen\n", "Hi Anna,\n\nsounds good.\n\nBen"},
		{
			"gmail top posting",
			"Thanks, that works for me.\r\n\r\nOn Mon, Mar 4, 2024 at 10:02 AM Jane Doe <jane@example.com> wrote:\r\n> Can we meet on Tuesday?\r\n>\r\n> Jane\r\n",
			"Thanks, that works for me.",
		},
		{
			"gmail attribution wrapped over two lines",
			"Sure, see you then.\n\nOn Mon, Mar 4, 2024 at 10:02 AM Jonathan Livingston-Seagull <\njonathan.livingston@example.com> wrote:\n\n> Lunch at noon?\n",
			"Sure, see you then.",
		},
		{
			"thunderbird attribution unquoted history",
			"Fixed in the next build.\n\nOn 04.03.24 10:02, Jane Doe wrote:\nthe export crashes on empty files\n",
			"Fixed in the next build.",
		},
		{
			"apple mail",
			"Yes.\n\nSent from my iPhone\n\n> On Mar 4, 2024, at 10:02, Jane Doe <jane@example.com> wrote:\n>\n> Coming tonight?\n",
			"Yes.",
		},
		{
			"bottom posting",
			"On Mon, Mar 4, 2024 at 10:02 AM Jane Doe <jane@example.com> wrote:\n> Can we meet on Tuesday?\n\nTuesday is fine.\n",
			"Tuesday is fine.",
		},
		{
			"interleaved",
			"Jane Doe wrote:\n> Question one?\n\nAnswer one.\n\n> Question two?\n\nAnswer two.\n",
			"Jane Doe wrote:\n\nAnswer one.\n\nAnswer two.",
		},
		{
			"german",
			"Passt, danke!\n\nAm 04.03.2024 um 10:02 schrieb Hans Müller <hans@example.de>:\n> Passt Dienstag?\n",
			"Passt, danke!",
		},
		{
			"french with no-break space",
			"D'accord.\n\nLe lun. 4 mars 2024 à 10:02, Jean Dupont <jean@example.fr> a écrit\u00a0:\n> Mardi ?\n",
			"D'accord.",
		},
		{
			"spanish",
			"De acuerdo.\n\nEl lun, 4 mar 2024 a las 10:02, Juan Pérez (<juan@example.es>) escribió:\n> ¿El martes?\n",
			"De acuerdo.",
		},
		{
			"outlook original message",
			"Approved.\r\n\r\n-----Original Message-----\r\nFrom: Jane Doe [mailto:jane@example.com]\r\nSent: Monday, March 4, 2024 10:02 AM\r\nTo: Ben\r\nSubject: PO 1234\r\n\r\nPlease approve.\r\n",
			"Approved.",
		},
		{
			"outlook separator and header block",
			"Done, see attached.\r\n\r\nBest regards,\r\nBen\r\n\r\n________________________________\r\nFrom: Jane Doe <jane@example.com>\r\nSent: Monday, March 4, 2024 10:02\r\nTo: Ben Smith <ben@example.com>\r\nSubject: report\r\n\r\nCan you send the report?\r\n",
			"Done, see attached.\n\nBest regards,\nBen",
		},
		{
			"outlook header block only, bold names",
			"OK\n\n*From:* Jane Doe <jane@example.com>\n*Sent:* Monday, March 4, 2024 10:02\n*To:* Ben\n*Cc:* Team\n*Subject:* report\n\nold text\n",
			"OK",
		},
		{
			"german outlook header block",
			"Erledigt.\n\nVon: Hans Müller <hans@example.de>\nGesendet: Montag, 4. März 2024 10:02\nAn: Ben\nBetreff: Bericht\n\nalter Text\n",
			"Erledigt.",
		},
		{
			"from line that is not a header block",
			"From: the team, thanks for everything.\nBen\n",
			"From: the team, thanks for everything.\nBen",
		},
		{
			"signature delimiter",
			"See you at 3.\n\n-- \nBen Smith\nACME Corp | +1 555 0100\n",
			"See you at 3.",
		},
		{
			"signature delimiter without space",
			"See you at 3.\n--\nBen\n",
			"See you at 3.",
		},
		{"android", "On my way\n\nSent from my Android device\n", "On my way"},
		{"get outlook for ios", "Will do.\n\nGet Outlook for iOS<https://aka.ms/o0ukef>\n", "Will do."},
		{"german mobile", "Ja.\n\nVon meinem iPhone gesendet\n", "Ja."},
		{"sentence starting with On", "On Tuesday we ship.\nBen\n", "On Tuesday we ship.\nBen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := reply.Strip(tt.in); got != tt.want {
				t.Errorf("Strip(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestStripCorpus runs Strip on replies from the shared corpus (single-part text/plain, 7bit),
// read in place.
func TestStripCorpus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file, want string
	}{
		{"plain/mail--plain_emails--raw_email_reply.eml", "Message body"},
		{
			"plain/spamassassin--nice-002.eml",
			"blah blah blah... no body needed, this is a test\nWell, let's toss in some evite.citysearch.com score reducers\n" +
				"We have received a request for subscription of your email address to the happy mailing list\n\n--j.",
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			raw, err := os.ReadFile(filepath.Join("..", "..", "..", "shared", "corpus", tt.file))
			if err != nil {
				t.Fatalf("reading corpus file: %v", err)
			}
			msg := strings.ReplaceAll(string(raw), "\r\n", "\n")
			_, body, ok := strings.Cut(msg, "\n\n")
			if !ok {
				t.Fatalf("%s has no body", tt.file)
			}
			if got := reply.Strip(body); got != tt.want {
				t.Errorf("Strip(body of %s)\n got %q\nwant %q", tt.file, got, tt.want)
			}
		})
	}
}

func FuzzStrip(f *testing.F) {
	for _, s := range []string{
		"", "hi\n> quoted", "ok\r\n\r\nOn Mon, Jane wrote:\r\n> x", "a\n-- \nsig",
		"x\n-----Original Message-----\nFrom: a\nSent: b\nTo: c\nSubject: d",
		"Am 1.1. um 10 schrieb X <\nx@y>:\n> q", "\xff\xfe>\r\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got := reply.Strip(in)
		if len(got) > len(in) {
			t.Fatalf("Strip(%q) = %q is longer than its input", in, got)
		}
		if utf8.ValidString(in) && !utf8.ValidString(got) {
			t.Fatalf("Strip(%q) = %q is not valid UTF-8", in, got)
		}
	})
}
