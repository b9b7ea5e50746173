package recording

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Recorded bytes come from any caller of the workload. Before they reach a
// terminal, whatever a terminal acts on is written as an escape instead:
// C0 and C1 control characters, DEL, the Unicode bidirectional controls
// (which reorder what is shown) and bytes that are not UTF-8.

// needsEscape reports whether r must not reach a terminal as it is.
func needsEscape(r rune) bool {
	return r == utf8.RuneError || unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) ||
		r == '\u2028' || r == '\u2029'
}

// Printable returns s for a terminal, on one line: control characters,
// newlines included, are written as Go escapes (\n, \x1b, \u202e), bytes
// that are not UTF-8 as \xff. Printable text is left as it is.
func Printable(s string) string { return printable(s, false) }

// PrintableText is Printable but keeps newlines (also CRLF) and tabs: for
// bodies.
func PrintableText(s string) string { return printable(s, true) }

func printable(s string, multiline bool) string {
	if !strings.ContainsFunc(s, needsEscape) && utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case multiline && (r == '\n' || r == '\t'):
			b.WriteRune(r)
		case multiline && r == '\r' && strings.HasPrefix(s[i+1:], "\n"):
			b.WriteRune(r) // a line end cannot hide text

		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x80 && needsEscape(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case needsEscape(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}
