package recording

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestPrintable(t *testing.T) {
	tests := []struct{ in, one, text string }{
		{"plain ünï ✓", "plain ünï ✓", "plain ünï ✓"},
		{"a\nb\tc\r\nd\re", `a\nb\tc\r\nd\re`, "a\nb\tc\r\nd\\re"},
		{"\x1b[2J\x07\x7f", `\x1b[2J\x07\x7f`, `\x1b[2J\x07\x7f`},
		{"\u009b31m \u202egnp \u2028", `\u009b31m \u202egnp \u2028`, `\u009b31m \u202egnp \u2028`},
		{"bad \xff\xfe", `bad \xff\xfe`, `bad \xff\xfe`},
	}
	for _, tt := range tests {
		if got := Printable(tt.in); got != tt.one {
			t.Errorf("Printable(%q) = %q, want %q", tt.in, got, tt.one)
		}
		if got := PrintableText(tt.in); got != tt.text {
			t.Errorf("PrintableText(%q) = %q, want %q", tt.in, got, tt.text)
		}
	}
}

// FuzzPrintable: nothing a terminal acts on survives, whatever the input.
func FuzzPrintable(f *testing.F) {
	for _, s := range []string{"\x1b[31m", "a\r\nb", "\xff\u202e\u009b", "ok"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, out := range []string{Printable(s), strings.NewReplacer("\r\n", "", "\n", "", "\t", "").Replace(PrintableText(s))} {
			if !utf8.ValidString(out) || strings.ContainsFunc(out, needsEscape) {
				t.Fatalf("%q -> %q", s, out)
			}
		}
	})
}
