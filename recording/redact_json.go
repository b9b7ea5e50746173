package recording

import (
	"encoding/json"
	"strconv"
	"strings"
)

// maxJSONDepth bounds the nesting the scanner follows; a container deeper
// than that is redacted whole rather than let through.
const maxJSONDepth = 128

// json redacts the values of secret fields in a JSON body, which may be
// cut short anywhere (the recorder caps bodies) or not be JSON past some
// point: it scans tokens instead of parsing, keeps every byte it does not
// redact, uses no recursion and at most maxJSONDepth frames. It returns
// the body and the paths it redacted ("user.password", "items[2].token").
func (r Redactor) json(body []byte) ([]byte, []string) {
	type frame struct {
		object    bool
		key       string // objects: the current field
		expectKey bool
		index     int // arrays: the current element
	}
	var stack []frame
	var paths []string
	out := make([]byte, 0, len(body))
	// path is where the value about to be read sits.
	path := func() string {
		var b strings.Builder
		for _, f := range stack {
			switch {
			case !f.object:
				b.WriteString("[" + strconv.Itoa(f.index) + "]")
			case b.Len() > 0:
				b.WriteString("." + f.key)
			default:
				b.WriteString(f.key)
			}
		}
		return b.String()
	}
	// secret says whether the value about to be read belongs to a secret
	// field: named (any value) or by look (strings, objects, arrays).
	secret := func() (named, byLook bool) {
		if r.Off || len(stack) == 0 || !stack[len(stack)-1].object {
			return false, false
		}
		k := stack[len(stack)-1].key
		return r.named(k), secretName(k)
	}
	redact := func(end int, i *int) {
		out = append(out, `"`+Redacted+`"`...)
		paths = append(paths, path())
		*i = end
	}
	for i := 0; i < len(body); {
		c := body[i]
		var top *frame
		if len(stack) > 0 {
			top = &stack[len(stack)-1]
		}
		switch c {
		case '{', '[':
			if named, byLook := secret(); named || byLook || len(stack) >= maxJSONDepth {
				redact(skipValue(body, i), &i)
				continue
			}
			stack = append(stack, frame{object: c == '{', expectKey: c == '{'})
		case '}', ']':
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		case ',':
			if top != nil && top.object {
				top.expectKey = true
			} else if top != nil {
				top.index++
			}
		case '"':
			end := stringEnd(body, i)
			if top != nil && top.object && top.expectKey {
				if k, ok := plainKey(body[i:end]); ok {
					top.key = k
				} else if err := json.Unmarshal(body[i:end], &top.key); err != nil {
					top.key = string(body[i+1 : end])
				}
				top.expectKey = false
			} else if named, byLook := secret(); named || byLook {
				redact(end, &i)
				continue
			}
			out = append(out, body[i:end]...)
			i = end
			continue
		case ' ', '\t', '\r', '\n', ':':
		default:
			end := i
			for end < len(body) && !isDelim(body[end]) {
				end++
			}
			if named, _ := secret(); named {
				redact(end, &i)
				continue
			}
			out = append(out, body[i:end]...)
			i = end
			continue
		}
		out = append(out, c)
		i++
	}
	return out, paths
}

func isDelim(c byte) bool {
	switch c {
	case ',', '}', ']', ':', '"', '{', '[', ' ', '\t', '\r', '\n':
		return true
	}
	return false
}

// stringEnd returns the index just past the string starting at b[i], or
// len(b) when the body ends inside it.
// plainKey returns a quoted key of printable ASCII without escapes (nearly
// every key) as json.Unmarshal would, without its cost.
func plainKey(q []byte) (string, bool) {
	if len(q) < 2 || q[len(q)-1] != '"' {
		return "", false
	}
	for _, c := range q[1 : len(q)-1] {
		if c < 0x20 || c > 0x7e || c == '\\' {
			return "", false
		}
	}
	return string(q[1 : len(q)-1]), true
}

func stringEnd(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(b)
}

// skipValue returns the index just past the object or array at b[i], or
// len(b) when the body ends inside it.
func skipValue(b []byte, i int) int {
	depth := 0
	for j := i; j < len(b); j++ {
		switch b[j] {
		case '"':
			j = stringEnd(b, j) - 1
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return j + 1
			}
		}
	}
	return len(b)
}
