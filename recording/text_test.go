package recording

import "testing"

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
