package podenv

import "strings"

// expand replaces the $(NAME) references in s as the kubelet does for an
// env value (and for command and args): lookup gives a name's value, and a
// name it does not know is left as written, $(NAME). $$ is a literal $. A
// $ before anything else, or at the end, stays as it is, as does an
// unclosed $( .
//
// One quirk is kept on purpose: after a $ the kubelet looks at one byte,
// not one character, and writes that byte back as the character of the
// same number; a multi-byte character right after a $ ("$é") therefore
// comes out changed. The process sees that, so tether shows that.
func expand(s string, lookup func(string) (string, bool)) string {
	var b strings.Builder
	done := 0 // s[:done] is written or consumed
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			continue
		}
		b.WriteString(s[done:i])
		next := s[i+1]
		switch next {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				// Unclosed: keep "$(" and go on after it.
				b.WriteString("$(")
				i++
				break
			}
			name := s[i+2 : i+2+end]
			if v, ok := lookup(name); ok {
				b.WriteString(v)
			} else {
				b.WriteString("$(" + name + ")")
			}
			i += 2 + end
		default:
			b.WriteByte('$')
			b.WriteString(string(rune(next))) // the byte as a character: see above
			i++
		}
		done = i + 1
	}
	b.WriteString(s[done:])
	return b.String()
}
