package replay

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Expect is one condition of a failure: an answer that meets every Expect
// of a reproduction reproduces the failure. Forms (ParseExpect):
//
//	status=500  status!=200  status=5xx  status>=500
//	latency>500ms  latency>=2s  latency<10ms
//	json:.error=out of stock  json:$.items[0].state!="ok"  json:.error
//	error                     (no answer: the request itself failed)
type Expect struct {
	// Raw is the condition as written.
	Raw   string
	field string // status, latency, json or error
	op    string // =, !=, >, >=, <, <=; "" for json presence and error
	// One of these holds the value compared with.
	status     int
	class      int // 5 for 5xx
	latency    time.Duration
	path       []pathStep
	jsonValue  any
	hasJSONVal bool
	text       string
}

type pathStep struct {
	key   string
	index int // -1: key
}

var ops = []string{"!=", ">=", "<=", "=", ">", "<"}

// ParseExpect parses one --expect condition.
func ParseExpect(s string) (Expect, error) {
	e := Expect{Raw: s}
	bad := func(why string) (Expect, error) {
		return Expect{}, fmt.Errorf("--expect %q: %s; write status=500, status=5xx, latency>500ms, json:.error=VALUE or error", s, why)
	}
	if strings.TrimSpace(s) == "error" {
		e.field = "error"
		return e, nil
	}
	if rest, ok := strings.CutPrefix(s, "json:"); ok {
		e.field = "json"
		pathText, value, op := rest, "", ""
		if i := strings.IndexAny(rest, "!="); i >= 0 {
			pathText = rest[:i]
			if strings.HasPrefix(rest[i:], "!=") {
				op, value = "!=", rest[i+2:]
			} else {
				op, value = "=", rest[i+1:]
			}
		}
		path, err := parsePath(strings.TrimSpace(pathText))
		if err != nil {
			return bad(err.Error())
		}
		e.path, e.op = path, op
		if op != "" {
			var v any
			if json.Unmarshal([]byte(value), &v) == nil {
				e.jsonValue, e.hasJSONVal = v, true
			}
			e.text = value
		}
		return e, nil
	}
	for _, op := range ops {
		field, value, ok := strings.Cut(s, op)
		if !ok {
			continue
		}
		e.field, e.op = strings.TrimSpace(field), op
		value = strings.TrimSpace(value)
		switch e.field {
		case "status":
			if len(value) == 3 && strings.HasSuffix(value, "xx") && value[0] >= '1' && value[0] <= '5' {
				if op != "=" && op != "!=" {
					return bad("a status class takes = or !=")
				}
				e.class = int(value[0] - '0')
				return e, nil
			}
			n, err := strconv.Atoi(value)
			if err != nil || n < 100 || n > 599 {
				return bad("the status is a number from 100 to 599 or a class such as 5xx")
			}
			e.status = n
			return e, nil
		case "latency":
			d, err := time.ParseDuration(value)
			if err != nil || d < 0 {
				return bad("the latency is a duration such as 500ms")
			}
			if op == "=" || op == "!=" {
				return bad("a latency takes >, >=, < or <=")
			}
			e.latency = d
			return e, nil
		default:
			return bad(fmt.Sprintf("unknown field %q", e.field))
		}
	}
	return bad("no condition")
}

// Match reports whether r meets the condition. An answer that did not
// come (r.Error, r.Skipped) meets only "error".
func (e Expect) Match(r Result) bool {
	if e.field == "error" {
		return r.Error != ""
	}
	if r.Error != "" || r.Skipped != "" {
		return false
	}
	switch e.field {
	case "status":
		if e.class != 0 {
			return (r.Status/100 == e.class) == (e.op == "=")
		}
		return compare(float64(r.Status), float64(e.status), e.op)
	case "latency":
		return compare(float64(r.Latency), float64(e.latency), e.op)
	case "json":
		var doc any
		dec := json.NewDecoder(bytes.NewReader(r.Body))
		dec.UseNumber()
		if dec.Decode(&doc) != nil {
			return false
		}
		v, ok := lookup(doc, e.path)
		switch {
		case e.op == "":
			return ok
		case !ok:
			return e.op == "!="
		}
		eq := e.equal(v)
		return eq == (e.op == "=")
	}
	return false
}

// equal compares an answer's value with the expected one: as JSON when
// the expected value is JSON (500, true, "ok"), else as text.
func (e Expect) equal(v any) bool {
	if n, ok := v.(json.Number); ok {
		if f, err := n.Float64(); err == nil {
			v = f
		}
	}
	if e.hasJSONVal {
		a, _ := json.Marshal(v)
		b, _ := json.Marshal(e.jsonValue)
		return bytes.Equal(a, b)
	}
	if s, ok := v.(string); ok {
		return s == e.text
	}
	b, _ := json.Marshal(v)
	return string(b) == e.text
}

func compare(a, b float64, op string) bool {
	switch op {
	case "=":
		return a == b
	case "!=":
		return a != b
	case ">":
		return a > b
	case ">=":
		return a >= b
	case "<":
		return a < b
	case "<=":
		return a <= b
	}
	return false
}

// parsePath parses .a.b[0].c (or $.a...).
func parsePath(p string) ([]pathStep, error) {
	p = strings.TrimPrefix(p, "$")
	if p == "" || p[0] != '.' && p[0] != '[' {
		return nil, fmt.Errorf("the JSON path %q starts with '.', e.g. .error or .items[0].state", p)
	}
	var out []pathStep
	for len(p) > 0 {
		switch p[0] {
		case '.':
			p = p[1:]
			end := strings.IndexAny(p, ".[")
			if end < 0 {
				end = len(p)
			}
			if end == 0 {
				if len(p) == 0 && len(out) == 0 {
					return out, nil // "." is the whole answer
				}
				return nil, fmt.Errorf("the JSON path has an empty key")
			}
			out = append(out, pathStep{key: p[:end], index: -1})
			p = p[end:]
		case '[':
			end := strings.IndexByte(p, ']')
			if end < 0 {
				return nil, fmt.Errorf("the JSON path has an unclosed '['")
			}
			n, err := strconv.Atoi(p[1:end])
			if err != nil || n < 0 {
				return nil, fmt.Errorf("the JSON path's index %q is not a number", p[1:end])
			}
			out = append(out, pathStep{index: n})
			p = p[end+1:]
		default:
			return nil, fmt.Errorf("the JSON path has %q where '.' or '[' belongs", p[0])
		}
	}
	return out, nil
}

func lookup(doc any, path []pathStep) (any, bool) {
	for _, s := range path {
		if s.index >= 0 {
			l, ok := doc.([]any)
			if !ok || s.index >= len(l) {
				return nil, false
			}
			doc = l[s.index]
			continue
		}
		m, ok := doc.(map[string]any)
		if !ok {
			return nil, false
		}
		if doc, ok = m[s.key]; !ok {
			return nil, false
		}
	}
	return doc, true
}

// MatchAll reports whether r meets every condition of expects.
func MatchAll(expects []Expect, r Result) bool {
	for _, e := range expects {
		if !e.Match(r) {
			return false
		}
	}
	return len(expects) > 0
}
