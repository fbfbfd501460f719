package reply

import (
	"regexp"
	"strings"
	"testing"
)

// The byte tests in front of the line patterns must never say no where the pattern says yes.
func TestPrefiltersAgreeWithPatterns(t *testing.T) {
	t.Parallel()
	attributionStartRE := regexp.MustCompile(`^(?:On|Am|Le|El)\s`)
	lines := []string{
		"", "-", "--", "-- ", "---", "----- Original Message -----", "-----Original Message-----",
		"-- Ursprüngliche Nachricht --", strings.Repeat("_", 30), strings.Repeat("-", 30), "_", "Sent from my iPhone",
		"Sent from Mail for Windows", "Get Outlook for iOS", "Von meinem iPhone gesendet",
		"Envoyé de mon iPad", "Enviado desde mi iPhone", "sent from my iPhone", "From: Anna <a@b>",
		"*From:* Anna", "**From:** Anna", "from : x", "Von: x", "De: x", "de : x", "DE:x", "Date: x",
		"On Mon, Ben wrote:", "On\tMon", "On\fMon", "On\rx", "Onx", "On", "Am 1. Mai", "Le 1 mai", "El lunes",
		"Ön x", "\u212aey", "ſent", "Fr om: x", "*", "**", "*f", " From: x", ">From: x",
	}
	for _, l := range lines {
		if got, want := attributionStart(l), attributionStartRE.MatchString(l); got != want {
			t.Errorf("attributionStart(%q) = %v, pattern %v", l, got, want)
		}
		if got, want := history(l), historyRE.MatchString(l); got != want {
			t.Errorf("history(%q) = %v, pattern %v", l, got, want)
		}
		if got, want := signature(l), signatureRE.MatchString(l); got != want {
			t.Errorf("signature(%q) = %v, pattern %v", l, got, want)
		}
		if got, want := headerFrom(l), headerFromRE.MatchString(l); got != want {
			t.Errorf("headerFrom(%q) = %v, pattern %v", l, got, want)
		}
	}
}

func FuzzPrefiltersAgreeWithPatterns(f *testing.F) {
	attributionStartRE := regexp.MustCompile(`^(?:On|Am|Le|El)\s`)
	for _, s := range []string{"On x", "-- ", "*From: x", "Sent from my phone", "_____"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, l string) {
		if attributionStart(l) != attributionStartRE.MatchString(l) || history(l) != historyRE.MatchString(l) ||
			signature(l) != signatureRE.MatchString(l) || headerFrom(l) != headerFromRE.MatchString(l) {
			t.Errorf("prefilters disagree with the patterns on %q", l)
		}
	})
}
