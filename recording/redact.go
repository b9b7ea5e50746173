package recording

import (
	"bytes"
	"mime"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Redacted replaces a secret's value.
const Redacted = "[REDACTED]"

// DefaultRedactedHeaders are always redacted unless redaction is off.
// Names that look like secrets are too: see Redactor.Secret.
var DefaultRedactedHeaders = []string{"Authorization", "Cookie", "Set-Cookie", "Proxy-Authorization"}

// secretParts are what a name that holds a secret contains, once lowered
// and stripped of everything but letters and digits ("X-Auth-Token",
// "client_secret", "apiKey", "sessionid").
var secretParts = []string{"token", "secret", "passw", "apikey", "accesskey", "privatekey", "session", "cookie",
	"credential", "signature", "authorization", "csrf", "xsrf"}

// secretPartLetters are the letters of each of secretParts, as bits: a
// name lacking one of them cannot contain the part. Read only.
var secretPartLetters = func() []uint32 {
	out := make([]uint32, len(secretParts))
	for i, p := range secretParts {
		for _, c := range p {
			out[i] |= 1 << (c - 'a')
		}
	}
	return out
}()

// secretWords are secret names as a word of their own ("X-Auth", "pwd").
var secretWords = []string{"auth", "jwt", "pwd", "otp"}

// urlHeaders carry URLs whose query is redacted like the request's.
var urlHeaders = []string{"Location", "Content-Location", "Referer"}

// Redactor removes secrets from exchanges before they are stored, and from
// what is shown of live answers (replay --diff). It goes by name wherever
// a name appears: header and trailer names, query parameters (the
// request's, and those of URLs in Location, Content-Location and Referer),
// form fields (application/x-www-form-urlencoded and multipart/form-data)
// and JSON fields at any depth, in bodies cut short too. A name is secret when Secret says so.
type Redactor struct {
	// Off records everything as seen; it must be asked for explicitly.
	Off bool
	// Names are extra names to redact, matched without regard to case:
	// their values are redacted whatever their type.
	Names []string
}

// Secret reports whether values named name are redacted: a name in Names,
// one of DefaultRedactedHeaders, or one that looks like a secret (it
// contains one of token, secret, passw, apikey, accesskey, privatekey,
// session, cookie, credential, signature, authorization, csrf, xsrf once
// lowered with separators removed, or has auth, jwt, pwd or otp as a word).
// By the look of its name, a JSON string, object or array is redacted,
// not a number, true, false or null ("max_tokens": 100 stays); names in
// Names redact any value.
func (r Redactor) Secret(name string) bool {
	return !r.Off && (r.named(name) || secretName(name))
}

func (r Redactor) named(name string) bool {
	for _, n := range r.Names {
		if strings.EqualFold(n, name) {
			return true
		}
	}
	return false
}

// plainHeaders are header names (as Go writes them, canonical) most
// exchanges carry, none of them secret by secretName's rules
// (TestPlainHeadersAreNotSecret): they are answered by one lookup, not by
// searching each name for every secret part. Read only.
var plainHeaders = func() map[string]bool {
	m := map[string]bool{}
	for _, n := range []string{"Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language", "Accept-Ranges",
		"Access-Control-Allow-Headers", "Access-Control-Allow-Methods", "Access-Control-Allow-Origin",
		"Access-Control-Max-Age", "Age", "Allow", "Baggage", "Cache-Control", "Connection", "Content-Disposition",
		"Content-Encoding", "Content-Language", "Content-Length", "Content-Location", "Content-Range", "Content-Type",
		"Date", "Etag", "Expect", "Expires", "Forwarded", "Grpc-Accept-Encoding", "Grpc-Encoding", "Grpc-Message",
		"Grpc-Status", "Grpc-Timeout", "Host", "If-Match", "If-Modified-Since", "If-None-Match", "If-Range",
		"If-Unmodified-Since", "Keep-Alive", "Last-Modified", "Link", "Location", "Origin", "Pragma", "Range", "Referer",
		"Retry-After", "Server", "Strict-Transport-Security", "Te", "Traceparent", "Tracestate", "Trailer",
		"Transfer-Encoding", "Upgrade", "User-Agent", "Vary", "Via", "X-B3-Sampled", "X-B3-Spanid", "X-B3-Traceid",
		"X-Content-Type-Options", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Frame-Options",
		"X-Real-Ip", "X-Request-Id", "X-Tether-User"} {
		m[n] = true
	}
	return m
}()

// secretName is called for every header, query, form and JSON field name
// the agent records: common header names are looked up (plainHeaders);
// other names of ASCII letters, digits and separators (nearly all) are
// checked without allocating; the rest by secretNameSlow.
func secretName(name string) bool {
	if plainHeaders[name] {
		return false
	}
	for _, d := range DefaultRedactedHeaders {
		if strings.EqualFold(d, name) {
			return true
		}
	}
	var buf [128]byte
	if len(name) > len(buf) {
		return secretNameSlow(name)
	}
	flat := buf[:0]
	var has uint32 // the letters in name
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= utf8.RuneSelf:
			return secretNameSlow(name)
		case 'A' <= c && c <= 'Z':
			flat = append(flat, c+'a'-'A')
			has |= 1 << (c - 'A')
		case 'a' <= c && c <= 'z':
			flat = append(flat, c)
			has |= 1 << (c - 'a')
		case '0' <= c && c <= '9':
			flat = append(flat, c)
		}
	}
	for i, p := range secretParts {
		if secretPartLetters[i]&^has == 0 && bytes.Contains(flat, []byte(p)) {
			return true
		}
	}
	// The words: runs of letters and digits (the name is ASCII here).
	for start, i := 0, 0; i <= len(name); i++ {
		if i < len(name) && isASCIIAlnum(rune(name[i])) {
			continue
		}
		if word := name[start:i]; word != "" {
			for _, s := range secretWords {
				if strings.EqualFold(word, s) {
					return true
				}
			}
		}
		start = i + 1
	}
	return false
}

func isASCIIAlnum(c rune) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// secretNameSlow is secretName for any name.
func secretNameSlow(name string) bool {
	for _, d := range DefaultRedactedHeaders {
		if strings.EqualFold(d, name) {
			return true
		}
	}
	var flat strings.Builder
	for _, c := range strings.ToLower(name) {
		if unicode.IsLetter(c) || unicode.IsDigit(c) {
			flat.WriteRune(c)
		}
	}
	for _, p := range secretParts {
		if strings.Contains(flat.String(), p) {
			return true
		}
	}
	words := strings.FieldsFunc(strings.ToLower(name), func(c rune) bool { return !unicode.IsLetter(c) && !unicode.IsDigit(c) })
	for _, w := range words {
		for _, s := range secretWords {
			if w == s {
				return true
			}
		}
	}
	return false
}

// Apply redacts e in place.
func (r Redactor) Apply(e *Exchange) {
	r.Message(&e.Request)
	if e.Response != nil {
		r.Message(e.Response)
	}
}

// Message redacts m in place and adds what it redacted to m.Redacted:
// header names, "query:NAME", "form:NAME", "multipart:NAME",
// "Location:NAME" and JSON paths.
func (r Redactor) Message(m *Message) {
	if r.Off {
		return
	}
	for _, h := range []http.Header{m.Header, m.Trailer} {
		for k, vs := range h {
			if !r.Secret(k) {
				continue
			}
			for i := range vs {
				vs[i] = Redacted
			}
			m.Redacted = append(m.Redacted, http.CanonicalHeaderKey(k))
		}
	}
	for _, k := range urlHeaders {
		vs := m.Header[k]
		for i, v := range vs {
			if path, query, ok := strings.Cut(v, "?"); ok {
				q, names := r.query(query)
				vs[i] = path + "?" + q
				for _, n := range names {
					m.Redacted = append(m.Redacted, k+":"+n)
				}
			}
		}
	}
	if path, query, ok := strings.Cut(m.Target, "?"); ok {
		q, names := r.query(query)
		m.Target = path + "?" + q
		for _, n := range names {
			m.Redacted = append(m.Redacted, "query:"+n)
		}
	}
	if len(m.Body) > 0 {
		switch mt := mediaType(m.Header); {
		case mt == "application/x-www-form-urlencoded":
			q, names := r.query(string(m.Body))
			if len(names) > 0 {
				m.Body = []byte(q)
			}
			for _, n := range names {
				m.Redacted = append(m.Redacted, "form:"+n)
			}
		case mt == "multipart/form-data" && boundary(m.Header) != "":
			body, names := r.multipart(m.Body, boundary(m.Header))
			m.Body = body
			for _, n := range names {
				m.Redacted = append(m.Redacted, "multipart:"+n)
			}
		case mt == "application/json" || strings.HasSuffix(mt, "+json") || looksJSON(m.Body):
			if body, paths := r.json(m.Body); len(paths) > 0 {
				m.Body = body
				m.Redacted = append(m.Redacted, paths...)
			}
		}
	}
	sort.Strings(m.Redacted)
	m.Redacted = compact(m.Redacted)
}

func mediaType(h http.Header) string {
	v := h.Get("Content-Type")
	if !strings.Contains(v, ";") {
		// No parameters (most JSON answers): the type ParseMediaType
		// returns, without the map it makes for every call. A malformed
		// type it would refuse can only make a body scanned as JSON.
		return strings.TrimSpace(strings.ToLower(v))
	}
	mt, _, _ := mime.ParseMediaType(v)
	return mt
}

// looksJSON: a body that starts as a JSON object or array is scanned
// whatever its Content-Type says.
func looksJSON(b []byte) bool {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		case '{', '[':
			return true
		}
		return false
	}
	return false
}

// query redacts the values of secret parameters in a query string (or a
// form body, possibly cut short), keeping every other byte, and returns
// the names it redacted.
func (r Redactor) query(q string) (string, []string) {
	parts := strings.Split(q, "&")
	var names []string
	for i, p := range parts {
		k, _, ok := strings.Cut(p, "=")
		if !ok {
			continue
		}
		name, err := url.QueryUnescape(k)
		if err != nil {
			name = k
		}
		if r.Secret(name) {
			parts[i] = k + "=" + Redacted
			names = append(names, name)
		}
	}
	return strings.Join(parts, "&"), names
}

func compact(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}
