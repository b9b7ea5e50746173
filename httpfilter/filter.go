// Package httpfilter says which HTTP requests a personal intercept takes:
// headers (exact or a regular expression) and a path (prefix or regular
// expression), as the CLI's flags give them, the wire carries them (Spec)
// and the agent matches them (Filter).
package httpfilter

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// HeaderMatch is one header condition: the request has a header Name whose
// value is Value, or, when Regex is set, a value Regex matches.
type HeaderMatch struct {
	Name  string
	Value string
	Regex *regexp.Regexp
}

// Filter selects requests: all of Headers match, and the path starts with
// PathPrefix (when set) and matches PathRegex (when set). The zero Filter
// matches every request.
type Filter struct {
	Headers    []HeaderMatch
	PathPrefix string
	PathRegex  *regexp.Regexp
}

// ParseHeader parses NAME=VALUE, or NAME=~REGEX for a regular expression
// (RE2, anchored: it must match the whole value).
func ParseHeader(s string) (HeaderMatch, error) {
	name, value, ok := strings.Cut(s, "=")
	name = strings.TrimSpace(name)
	if !ok || name == "" {
		return HeaderMatch{}, fmt.Errorf("header filter %q: want NAME=VALUE or NAME=~REGEX", s)
	}
	if !httpguts.ValidHeaderFieldName(name) {
		return HeaderMatch{}, fmt.Errorf("header filter %q: %q is not a valid header name", s, name)
	}
	m := HeaderMatch{Name: http.CanonicalHeaderKey(name)}
	if re, isRe := strings.CutPrefix(value, "~"); isRe {
		r, err := compile(re)
		if err != nil {
			return HeaderMatch{}, fmt.Errorf("header filter %q: %w", s, err)
		}
		m.Regex = r
		return m, nil
	}
	if !httpguts.ValidHeaderFieldValue(value) {
		return HeaderMatch{}, fmt.Errorf("header filter %q: the value has characters a header cannot carry", s)
	}
	m.Value = value
	return m, nil
}

// Spec is a filter as the user typed it and the wire carries it.
type Spec struct {
	// Headers are NAME=VALUE or NAME=~REGEX, all of which must match.
	Headers    []string `json:"headers,omitempty"`
	PathPrefix string   `json:"pathPrefix,omitempty"`
	PathRegex  string   `json:"pathRegex,omitempty"`
}

// IsZero reports whether s selects every request.
func (s Spec) IsZero() bool { return len(s.Headers) == 0 && s.PathPrefix == "" && s.PathRegex == "" }

// Parse checks s and compiles it.
func Parse(s Spec) (Filter, error) {
	var f Filter
	for _, h := range s.Headers {
		m, err := ParseHeader(h)
		if err != nil {
			return Filter{}, err
		}
		f.Headers = append(f.Headers, m)
	}
	if s.PathPrefix != "" {
		if !strings.HasPrefix(s.PathPrefix, "/") {
			return Filter{}, fmt.Errorf("path prefix %q: a path starts with /", s.PathPrefix)
		}
		f.PathPrefix = s.PathPrefix
	}
	if s.PathRegex != "" {
		r, err := ParsePathRegex(s.PathRegex)
		if err != nil {
			return Filter{}, err
		}
		f.PathRegex = r
	}
	return f, nil
}

// ParsePathRegex compiles a path regular expression (anchored, as
// ParseHeader's).
func ParsePathRegex(s string) (*regexp.Regexp, error) {
	r, err := compile(s)
	if err != nil {
		return nil, fmt.Errorf("path filter %q: %w", s, err)
	}
	return r, nil
}

func compile(expr string) (*regexp.Regexp, error) {
	if expr == "" {
		return nil, errors.New("empty regular expression")
	}
	return regexp.Compile("^(?:" + expr + ")$")
}

// Match reports whether r is selected by f. A header given several times
// matches when any of its values does; HTTP/2's :authority is Host.
func (f Filter) Match(r *http.Request) bool {
	if f.PathPrefix != "" && !strings.HasPrefix(r.URL.Path, f.PathPrefix) {
		return false
	}
	if f.PathRegex != nil && !f.PathRegex.MatchString(r.URL.Path) {
		return false
	}
	for _, h := range f.Headers {
		if !h.match(r) {
			return false
		}
	}
	return true
}

func (h HeaderMatch) match(r *http.Request) bool {
	values := r.Header.Values(h.Name)
	if h.Name == "Host" {
		values = []string{r.Host}
	}
	for _, v := range values {
		if h.Regex != nil && h.Regex.MatchString(v) || h.Regex == nil && v == h.Value {
			return true
		}
	}
	return false
}

// Overlaps reports whether some request could match both f and g. It is
// decided on what is certain: two exact values of one header, or two
// path prefixes neither of which starts the other, keep filters apart; a
// regular expression is taken to match anything (overlap is undecidable
// in general), so filters told apart only by regular expressions overlap.
func (f Filter) Overlaps(g Filter) bool {
	if f.PathPrefix != "" && g.PathPrefix != "" &&
		!strings.HasPrefix(f.PathPrefix, g.PathPrefix) && !strings.HasPrefix(g.PathPrefix, f.PathPrefix) {
		return false
	}
	for _, a := range f.Headers {
		for _, b := range g.Headers {
			if a.Name == b.Name && a.Regex == nil && b.Regex == nil && a.Value != b.Value {
				return false
			}
		}
	}
	return true
}

// IsZero reports whether f matches every request.
func (f Filter) IsZero() bool {
	return len(f.Headers) == 0 && f.PathPrefix == "" && f.PathRegex == nil
}

// String is the filter as the flags give it: "x-user=ana path /api/*".
func (f Filter) String() string {
	if f.IsZero() {
		return "all requests"
	}
	var parts []string
	for _, h := range f.Headers {
		if h.Regex != nil {
			parts = append(parts, h.Name+"=~"+unanchor(h.Regex))
		} else {
			parts = append(parts, h.Name+"="+h.Value)
		}
	}
	if f.PathPrefix != "" {
		parts = append(parts, "path "+f.PathPrefix+"*")
	}
	if f.PathRegex != nil {
		parts = append(parts, "path =~"+unanchor(f.PathRegex))
	}
	return strings.Join(parts, " ")
}

func unanchor(r *regexp.Regexp) string {
	s := r.String()
	return strings.TrimSuffix(strings.TrimPrefix(s, "^(?:"), ")$")
}
