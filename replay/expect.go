package replay

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Expect is one condition an answer meets when a failure recurs (`tether
// reproduce --expect`). The forms:
//
//	status=500  status=5xx  status!=200
//	grpc-status=13  grpc-status!=0
//	latency>500ms  latency>=1s  latency<50ms
//	json:$.error  (the field exists)  json:$.total=44.5  json:$.items[0].sku!="A1"
//	body~REGEX   (the body matches)
//	error        (no answer: refused, reset, timed out)
type Expect struct {
	text string
	eval func(a Answer) bool
}

// Answer is what an expectation looks at.
type Answer struct {
	Status     int
	GRPCStatus string
	Latency    time.Duration
	Body       []byte
	// Error says why there was no (whole) answer.
	Error string
}

func (e Expect) String() string { return e.text }

// Holds reports whether a meets the condition.
func (e Expect) Holds(a Answer) bool { return e.eval(a) }

// NeedsBody reports whether the condition reads the answer's body.
func (e Expect) NeedsBody() bool {
	return strings.HasPrefix(e.text, "json:") || strings.HasPrefix(e.text, "body~")
}

// ErrBadExpect: an expectation that cannot be read.
var ErrBadExpect = errors.New("bad expectation")

// ParseExpect reads one expectation.
func ParseExpect(s string) (Expect, error) {
	bad := func(format string, args ...any) (Expect, error) {
		return Expect{}, fmt.Errorf("%w %q: %s", ErrBadExpect, s, fmt.Sprintf(format, args...))
	}
	t := strings.TrimSpace(s)
	e := Expect{text: t}
	switch {
	case t == "error":
		e.eval = func(a Answer) bool { return a.Error != "" }
	case strings.HasPrefix(t, "status"):
		op, v, ok := cutOp(strings.TrimPrefix(t, "status"), "=", "!=")
		match, valid := statusMatcher(v)
		if !ok || !valid {
			return bad("write status=500, status=5xx or status!=200")
		}
		e.eval = func(a Answer) bool { return a.Error == "" && match(a.Status) == (op == "=") }
	case strings.HasPrefix(t, "grpc-status"):
		op, v, ok := cutOp(strings.TrimPrefix(t, "grpc-status"), "=", "!=")
		if n, err := strconv.Atoi(v); !ok || err != nil || n < 0 || n > 16 {
			return bad("write grpc-status=13 or grpc-status!=0 (a gRPC code, 0 to 16)")
		}
		e.eval = func(a Answer) bool {
			got := a.GRPCStatus
			if got == "" {
				return false // not a gRPC answer
			}
			return (got == v) == (op == "=")
		}
	case strings.HasPrefix(t, "latency"):
		op, v, ok := cutOp(strings.TrimPrefix(t, "latency"), ">=", "<=", ">", "<")
		d, err := time.ParseDuration(v)
		if !ok || err != nil || d < 0 {
			return bad("write latency>500ms, latency>=1s or latency<50ms")
		}
		e.eval = func(a Answer) bool {
			if a.Error != "" {
				return false
			}
			switch op {
			case ">":
				return a.Latency > d
			case ">=":
				return a.Latency >= d
			case "<":
				return a.Latency < d
			}
			return a.Latency <= d
		}
	case strings.HasPrefix(t, "json:"):
		path, op, want, err := parseJSONCond(strings.TrimPrefix(t, "json:"))
		if err != nil {
			return bad("%v", err)
		}
		e.eval = func(a Answer) bool {
			var doc any
			if a.Error != "" || json.Unmarshal(a.Body, &doc) != nil {
				return false
			}
			got, found := lookup(doc, path)
			switch op {
			case "":
				return found
			case "=":
				return found && reflect.DeepEqual(got, want)
			}
			return !found || !reflect.DeepEqual(got, want)
		}
	case strings.HasPrefix(t, "body~"):
		re, err := regexp.Compile(strings.TrimPrefix(t, "body~"))
		if err != nil {
			return bad("the regular expression: %v", err)
		}
		e.eval = func(a Answer) bool { return a.Error == "" && re.Match(a.Body) }
	default:
		return bad("expect status=..., grpc-status=..., latency>..., json:$.PATH[=VALUE], body~REGEX or error")
	}
	return e, nil
}

// cutOp splits "=500" or "!=200" into the operator (the first of ops
// that starts s) and the value.
func cutOp(s string, ops ...string) (op, value string, ok bool) {
	for _, o := range ops {
		if v, found := strings.CutPrefix(s, o); found && strings.TrimSpace(v) != "" {
			return o, strings.TrimSpace(v), true
		}
	}
	return "", "", false
}

func statusMatcher(v string) (func(int) bool, bool) {
	if len(v) == 3 && v[0] >= '1' && v[0] <= '5' && strings.EqualFold(v[1:], "xx") {
		class := int(v[0] - '0')
		return func(s int) bool { return s/100 == class }, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 100 || n > 599 {
		return nil, false
	}
	return func(s int) bool { return s == n }, true
}

// pathStep is one step of a JSON path: a field name, or an index.
type pathStep struct {
	field string
	index int // when field == ""
}

// parseJSONCond reads "$.a.b[0]", "$.a=VALUE" or "$.a!=VALUE"; VALUE is
// JSON (44.5, true, null, "text"), or bare text taken as a string.
func parseJSONCond(s string) (path []pathStep, op string, want any, err error) {
	p := s
	if i := strings.Index(s, "!="); i >= 0 {
		p, op = s[:i], "!="
		err = json.Unmarshal([]byte(strings.TrimSpace(s[i+2:])), &want)
		if err != nil {
			want, err = strings.TrimSpace(s[i+2:]), nil
		}
	} else if i := strings.IndexByte(s, '='); i >= 0 {
		p, op = s[:i], "="
		err = json.Unmarshal([]byte(strings.TrimSpace(s[i+1:])), &want)
		if err != nil {
			want, err = strings.TrimSpace(s[i+1:]), nil
		}
	}
	p = strings.TrimSpace(p)
	rest, ok := strings.CutPrefix(p, "$")
	if !ok {
		return nil, "", nil, errors.New("a JSON path starts with $, e.g. json:$.error or json:$.items[0].sku=\"A1\"")
	}
	for rest != "" {
		switch rest[0] {
		case '.':
			end := strings.IndexAny(rest[1:], ".[")
			if end < 0 {
				end = len(rest) - 1
			}
			name := rest[1 : 1+end]
			if name == "" {
				return nil, "", nil, fmt.Errorf("an empty field name in %s", p)
			}
			path = append(path, pathStep{field: name})
			rest = rest[1+end:]
		case '[':
			end := strings.IndexByte(rest, ']')
			n, convErr := strconv.Atoi(rest[1:max(end, 1)])
			if end < 0 || convErr != nil || n < 0 {
				return nil, "", nil, fmt.Errorf("write an index as [0] in %s", p)
			}
			path = append(path, pathStep{index: n})
			rest = rest[end+1:]
		default:
			return nil, "", nil, fmt.Errorf("write the path as $.field.sub[0] in %s", p)
		}
	}
	return path, op, want, nil
}

func lookup(doc any, path []pathStep) (any, bool) {
	for _, st := range path {
		switch v := doc.(type) {
		case map[string]any:
			if st.field == "" {
				return nil, false
			}
			x, ok := v[st.field]
			if !ok {
				return nil, false
			}
			doc = x
		case []any:
			if st.field != "" || st.index >= len(v) {
				return nil, false
			}
			doc = v[st.index]
		default:
			return nil, false
		}
	}
	return doc, true
}
