package replay

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"sort"
	"strings"

	"github.com/tetherkube/tether/recording"
)

// VolatileHeaders change from one answer to the next by nature; Diff skips
// them (more can be added per call).
var VolatileHeaders = []string{"Date", "Age", "Expires", "Last-Modified", "Etag", "Content-Length",
	"Connection", "Keep-Alive", "Transfer-Encoding", "Server-Timing"}

// Diff is how a replayed answer differs from the recorded one.
type Diff struct {
	Status string `json:"status,omitempty"` // "500 -> 200"
	// Headers lists the headers that differ: "X-Cache: HIT -> MISS".
	Headers []string `json:"headers,omitempty"`
	// Body lists the JSON paths that differ ("$.total: 89 -> 44.5"), or one
	// line for a body that is not JSON.
	Body []string `json:"body,omitempty"`
	// Trailers lists the trailers that differ, gRPC's status among them:
	// "Grpc-Status: 0 -> 5".
	Trailers []string `json:"trailers,omitempty"`
	// NotCompared says what could not be compared, e.g. a truncated record.
	NotCompared []string `json:"notCompared,omitempty"`
}

// Empty reports whether nothing differs.
func (d *Diff) Empty() bool {
	return d == nil || d.Status == "" && len(d.Headers) == 0 && len(d.Trailers) == 0 && len(d.Body) == 0
}

// Compare diffs a replayed answer (live: Status, Header, Trailer, Body)
// against the recorded one, ignoring the volatile headers, the extra ones
// in ignore, and redacted values. Both are redacted first (on copies) by
// recording's rules and the names the recording redacted, so the diff
// shows no secret of the live answer.
func Compare(recorded, live *recording.Message, ignore []string) *Diff {
	d := &Diff{}
	if recorded == nil {
		d.NotCompared = append(d.NotCompared, "the recording has no response")
		return d
	}
	r := redactorFor(recorded)
	recorded, live = redactedCopy(r, recorded), redactedCopy(r, live)
	grpc := isGRPC(recorded.Header) || isGRPC(live.Header)
	if grpc {
		trailersOnly(recorded)
		trailersOnly(live)
	}
	if recorded.Status != live.Status {
		d.Status = fmt.Sprintf("%d -> %d", recorded.Status, live.Status)
	}
	skip := map[string]bool{}
	for _, h := range append(append([]string(nil), VolatileHeaders...), ignore...) {
		skip[http.CanonicalHeaderKey(h)] = true
	}
	for _, h := range recorded.Redacted {
		skip[http.CanonicalHeaderKey(h)] = true
	}
	d.Headers = compareFields(recorded.Header, live.Header, skip)
	d.Trailers = compareFields(recorded.Trailer, live.Trailer, skip)
	switch {
	case recorded.Truncated:
		d.NotCompared = append(d.NotCompared, fmt.Sprintf("body: recorded only %d of %d bytes", len(recorded.Body), recorded.BodySize))
	case grpc:
		d.Body = grpcDiff(recorded.Body, live.Body)
	case len(recorded.Redacted) > 0 && bytes.Contains(recorded.Body, []byte(recording.Redacted)):
		d.Body = jsonDiff(recorded.Body, live.Body, true)
	default:
		d.Body = jsonDiff(recorded.Body, live.Body, false)
	}
	return d
}

// compareFields lists the fields (headers or trailers) that differ, but
// those in skip: "Name: recorded -> replayed".
func compareFields(a, b http.Header, skip map[string]bool) []string {
	keys := map[string]bool{}
	for k := range a {
		keys[http.CanonicalHeaderKey(k)] = true
	}
	for k := range b {
		keys[http.CanonicalHeaderKey(k)] = true
	}
	var names []string
	for k := range keys {
		if !skip[k] {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	var out []string
	for _, k := range names {
		va, vb := strings.Join(a.Values(k), ", "), strings.Join(b.Values(k), ", ")
		if va != vb {
			out = append(out, fmt.Sprintf("%s: %s -> %s", k, orNone(va), orNone(vb)))
		}
	}
	return out
}

// redactorFor redacts by the default rules and by every name the recording
// redacted: header names, the last field of JSON paths, query and form
// parameters.
func redactorFor(recorded *recording.Message) recording.Redactor {
	var r recording.Redactor
	for _, n := range recorded.Redacted {
		if i := strings.LastIndexAny(n, ".:]"); i >= 0 {
			n = n[i+1:]
		}
		if n != "" {
			r.Names = append(r.Names, n)
		}
	}
	return r
}

// redactedCopy returns m redacted by r, m untouched.
func redactedCopy(r recording.Redactor, m *recording.Message) *recording.Message {
	c := *m
	c.Header, c.Trailer = m.Header.Clone(), m.Trailer.Clone()
	c.Body = append([]byte(nil), m.Body...)
	c.Redacted = append([]string(nil), m.Redacted...)
	r.Message(&c)
	return &c
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// jsonDiff compares two bodies: structurally when both are JSON, as bytes
// otherwise. skipRedacted ignores recorded values that were redacted.
func jsonDiff(a, b []byte, skipRedacted bool) []string {
	var va, vb any
	da, db := json.NewDecoder(bytes.NewReader(a)), json.NewDecoder(bytes.NewReader(b))
	da.UseNumber()
	db.UseNumber()
	if len(bytes.TrimSpace(a)) > 0 && len(bytes.TrimSpace(b)) > 0 && da.Decode(&va) == nil && db.Decode(&vb) == nil {
		var out []string
		walkDiff("$", va, vb, skipRedacted, &out)
		return out
	}
	if bytes.Equal(a, b) {
		return nil
	}
	return []string{fmt.Sprintf("body differs: %d bytes recorded, %d replayed", len(a), len(b))}
}

func walkDiff(path string, a, b any, skipRedacted bool, out *[]string) {
	if skipRedacted && a == recording.Redacted {
		return
	}
	switch ta := a.(type) {
	case map[string]any:
		tb, ok := b.(map[string]any)
		if !ok {
			break
		}
		keys := map[string]bool{}
		for k := range ta {
			keys[k] = true
		}
		for k := range tb {
			keys[k] = true
		}
		var sorted []string
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			va, okA := ta[k]
			vb, okB := tb[k]
			p := path + "." + k
			switch {
			case !okA:
				*out = append(*out, fmt.Sprintf("%s: (absent) -> %s", p, show(vb)))
			case !okB:
				*out = append(*out, fmt.Sprintf("%s: %s -> (absent)", p, show(va)))
			default:
				walkDiff(p, va, vb, skipRedacted, out)
			}
		}
		return
	case []any:
		tb, ok := b.([]any)
		if !ok {
			break
		}
		for i := 0; i < max(len(ta), len(tb)); i++ {
			p := fmt.Sprintf("%s[%d]", path, i)
			switch {
			case i >= len(ta):
				*out = append(*out, fmt.Sprintf("%s: (absent) -> %s", p, show(tb[i])))
			case i >= len(tb):
				*out = append(*out, fmt.Sprintf("%s: %s -> (absent)", p, show(ta[i])))
			default:
				walkDiff(p, ta[i], tb[i], skipRedacted, out)
			}
		}
		return
	}
	if na, ok := a.(json.Number); ok {
		if nb, ok := b.(json.Number); ok {
			fa, errA := na.Float64()
			fb, errB := nb.Float64()
			if errA == nil && errB == nil && fa == fb {
				return // 89 and 89.0 are the same number
			}
		}
	}
	if !reflect.DeepEqual(a, b) {
		*out = append(*out, fmt.Sprintf("%s: %s -> %s", path, show(a), show(b)))
	}
}

func show(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 80 {
		return string(b[:77]) + "..."
	}
	return string(b)
}
