package recording

import (
	"encoding/json"
	"strconv"
)

// json redacts the values of secret fields in a JSON body, which may be
// cut short anywhere (the recorder caps bodies) or not be JSON past some
// point: it scans tokens instead of parsing, keeps every byte it does not
// redact, and uses no recursion. It returns the body and the paths it
// redacted ("user.password", "items[2].token").
func (r Redactor) json(body []byte) ([]byte, []string) {
	type frame struct {
		object    bool
		path      string // the container's own path
		key       string // objects: the current field
		expectKey bool
		index     int // arrays: the current element
	}
	var stack []*frame
	var paths []string
	out := make([]byte, 0, len(body))
	// value returns the path of the value about to be read and whether it
	// belongs to a secret field (named, so any value; or by look, strings).
	value := func() (path string, named, byLook bool) {
		if len(stack) == 0 {
			return "", false, false
		}
		f := stack[len(stack)-1]
		if !f.object {
			return f.path + "[" + strconv.Itoa(f.index) + "]", false, false
		}
		path = f.key
		if f.path != "" {
			path = f.path + "." + f.key
		}
		return path, !r.Off && r.named(f.key), !r.Off && secretName(f.key)
	}
	redact := func(path string, end int, i *int) {
		out = append(out, `"`+Redacted+`"`...)
		paths = append(paths, path)
		*i = end
	}
	for i := 0; i < len(body); {
		c := body[i]
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch c {
		case '{', '[':
			path, named, byLook := value()
			if named || byLook {
				redact(path, skipValue(body, i), &i)
				continue
			}
			stack = append(stack, &frame{object: c == '{', path: path, expectKey: c == '{'})
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
				if err := json.Unmarshal(body[i:end], &top.key); err != nil {
					top.key = string(body[i+1 : end])
				}
				top.expectKey = false
				out = append(out, body[i:end]...)
				i = end
				continue
			}
			if path, named, byLook := value(); named || byLook {
				redact(path, end, &i)
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
			if path, named, _ := value(); named {
				redact(path, end, &i)
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
