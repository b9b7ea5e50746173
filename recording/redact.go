package recording

import (
	"bytes"
	"encoding/json"
	"mime"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// Redacted replaces a secret's value.
const Redacted = "[REDACTED]"

// DefaultRedactedHeaders are always redacted unless redaction is off.
var DefaultRedactedHeaders = []string{"Authorization", "Cookie", "Set-Cookie", "Proxy-Authorization"}

// Redactor removes secrets from exchanges before they are stored.
type Redactor struct {
	// Off records everything as seen; it must be asked for explicitly.
	Off bool
	// Names are extra header names and JSON field names to redact, matched
	// without regard to case.
	Names []string
}

// Apply redacts e in place.
func (r Redactor) Apply(e *Exchange) {
	if r.Off {
		return
	}
	names := map[string]bool{}
	for _, n := range r.Names {
		names[strings.ToLower(n)] = true
	}
	r.message(&e.Request, names)
	if e.Response != nil {
		r.message(e.Response, names)
	}
}

func (r Redactor) message(m *Message, names map[string]bool) {
	for _, h := range []http.Header{m.Header, m.Trailer} {
		for k, vs := range h {
			lk := strings.ToLower(k)
			secret := names[lk]
			for _, d := range DefaultRedactedHeaders {
				secret = secret || strings.EqualFold(d, k)
			}
			if !secret {
				continue
			}
			for i := range vs {
				vs[i] = Redacted
			}
			m.Redacted = append(m.Redacted, http.CanonicalHeaderKey(k))
		}
	}
	if len(names) > 0 && len(m.Body) > 0 && !m.Truncated && isJSON(m.Header) {
		if body, paths, ok := redactJSON(m.Body, names); ok && len(paths) > 0 {
			m.Body = body
			m.Redacted = append(m.Redacted, paths...)
		}
	}
	sort.Strings(m.Redacted)
}

func isJSON(h http.Header) bool {
	mt, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

// redactJSON replaces the values of fields named in names, at any depth,
// and returns the paths it redacted ("user.password", "items[2].token").
func redactJSON(body []byte, names map[string]bool) ([]byte, []string, bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, nil, false
	}
	var paths []string
	v = walk(v, "", names, &paths)
	out, err := json.Marshal(v)
	if err != nil {
		return nil, nil, false
	}
	return out, paths, true
}

func walk(v any, path string, names map[string]bool, paths *[]string) any {
	switch t := v.(type) {
	case map[string]any:
		for k, child := range t {
			p := k
			if path != "" {
				p = path + "." + k
			}
			if names[strings.ToLower(k)] {
				t[k] = Redacted
				*paths = append(*paths, p)
				continue
			}
			t[k] = walk(child, p, names, paths)
		}
	case []any:
		for i, child := range t {
			t[i] = walk(child, path+"["+strconv.Itoa(i)+"]", names, paths)
		}
	}
	return v
}
