package recording

import (
	"bytes"
	"mime"
	"net/http"
	"net/textproto"
	"strings"
)

// multipart redacts the content of the parts of a multipart/form-data body
// whose field name is secret, keeping every other byte. It splits on the
// boundary itself instead of using mime/multipart, so a body cut short is
// redacted up to where it ends. It returns the names it redacted.
func (r Redactor) multipart(body []byte, boundary string) ([]byte, []string) {
	delim := []byte("--" + boundary)
	var out []byte
	var names []string
	rest := body
	first := true
	for {
		i := bytes.Index(rest, delim)
		if i < 0 {
			if first {
				return body, nil
			}
			out = append(out, rest...)
			break
		}
		first = false
		// rest[:i] is the previous part's content (or the preamble).
		out = append(out, rest[:i+len(delim)]...)
		rest = rest[i+len(delim):]
		head, content, ok := bytes.Cut(rest, []byte("\r\n\r\n"))
		if !ok {
			continue
		}
		end := bytes.Index(content, delim)
		if end < 0 {
			end = len(content)
		}
		name := partName(head)
		if name == "" || !r.Secret(name) {
			continue
		}
		// Keep the line end before the next delimiter.
		keep := end
		if keep >= 2 && bytes.Equal(content[keep-2:keep], []byte("\r\n")) {
			keep -= 2
		}
		out = append(out, head...)
		out = append(out, "\r\n\r\n"+Redacted...)
		out = append(out, content[keep:end]...)
		rest = content[end:]
		names = append(names, name)
	}
	if len(names) == 0 {
		return body, nil
	}
	return out, names
}

// partName returns the form field name in a part's header block.
func partName(head []byte) string {
	for _, line := range strings.Split(string(head), "\r\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(k)) != "Content-Disposition" {
			continue
		}
		if _, params, err := mime.ParseMediaType(strings.TrimSpace(v)); err == nil {
			return params["name"]
		}
	}
	return ""
}

// boundary returns a multipart/form-data body's boundary, "" for others.
func boundary(h http.Header) string {
	mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" {
		return ""
	}
	return params["boundary"]
}
