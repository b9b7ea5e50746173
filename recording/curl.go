package recording

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/http/httpguts"
)

// Curl returns shell commands (POSIX sh) that repeat e's request against
// base (e.g. "http://localhost:8080") with curl. Every recorded field is
// quoted so that the shell passes it to curl as one argument, exactly as
// recorded, and the text holds nothing a terminal acts on:
//
//   - printable fields are single-quoted;
//   - a field with control characters or bytes that are not UTF-8 is set
//     first in a variable from printf's %b escapes, on a line of its own;
//   - the body always goes through curl's standard input (--data-binary @-),
//     so a body starting with @ is not read as a file name;
//   - -g keeps curl from expanding [] and {} in the URL.
//
// Redacted headers and headers whose name is not a valid field name are
// left out, with a note in a comment (escaped, on one line).
func Curl(e *Exchange, base string) string {
	var w shellWords
	url := strings.TrimSuffix(base, "/") + e.Request.Target
	if strings.ContainsRune(e.Request.Method, 0) || strings.ContainsRune(url, 0) {
		return "# not written as a command: the recorded method or target holds a NUL byte"
	}
	cmd := "curl -g -X " + w.word(e.Request.Method) + " --url " + w.word(url)
	var keys []string
	for k := range e.Request.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var redacted, invalid []string
	for _, k := range keys {
		ck := http.CanonicalHeaderKey(k)
		if ck == "Content-Length" || ck == "Connection" || ck == "Transfer-Encoding" {
			continue
		}
		for _, v := range e.Request.Header[k] {
			switch {
			case v == Redacted:
				redacted = append(redacted, ck)
			case !httpguts.ValidHeaderFieldName(ck) || strings.ContainsRune(v, 0):
				invalid = append(invalid, ck)
			default:
				cmd += " -H " + w.word(ck+": "+v)
			}
		}
	}
	if len(e.Request.Body) > 0 {
		cmd = bodyPrintf(e.Request.Body) + " | " + cmd + " --data-binary @-"
	}
	lines := append(w.setup, cmd)
	if e.Request.Truncated {
		lines = append(lines, "# the body was truncated at record time")
	}
	if len(redacted) > 0 {
		lines = append(lines, "# redacted, add with -H: "+Printable(strings.Join(redacted, ", ")))
	}
	if len(invalid) > 0 {
		lines = append(lines, "# left out, not valid as a header: "+Printable(strings.Join(invalid, ", ")))
	}
	return strings.Join(lines, "\n")
}

// bodyPrintf returns a printf command that writes body exactly.
func bodyPrintf(body []byte) string {
	if s := string(body); shellSafe(s) {
		return "printf '%s' " + shellQuote(s)
	}
	return "printf '%b' " + shellQuote(printfEscape(string(body)))
}

// shellWords quotes words of one command; words that cannot be written
// literally become variables that setup assigns.
type shellWords struct {
	setup []string
}

// word returns s as one shell word that expands to exactly s (which holds
// no NUL: no argument can).
func (w *shellWords) word(s string) string {
	if shellSafe(s) {
		return shellQuote(s)
	}
	// $(...) drops trailing newlines: end with a _ and take it off.
	v := fmt.Sprintf("tether_%d", len(w.setup)+1)
	w.setup = append(w.setup, fmt.Sprintf("%s=$(printf '%%b_' %s); %s=${%s%%_}", v, shellQuote(printfEscape(s)), v, v))
	return `"$` + v + `"`
}

// shellSafe reports whether s can be written single-quoted on one line
// that a terminal shows as it is.
func shellSafe(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, needsEscape)
}

// shellQuote single-quotes s for a POSIX shell: inside single quotes
// every byte is literal but the quote, which is written as quote,
// backslash, quote, quote (close, a quoted quote, reopen).
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// printfEscape writes s as an argument to printf's %b: backslashes,
// control characters and bytes that are not UTF-8 as \0ooo octal escapes
// (POSIX), printable text as it is.
func printfEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == '\\' || (r == utf8.RuneError && n <= 1) || needsEscape(r) {
			for _, c := range []byte(s[i : i+n]) {
				fmt.Fprintf(&b, `\0%03o`, c)
			}
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}
