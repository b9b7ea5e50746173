package gatherlogs

import (
	"encoding/json"
	"regexp"
	"strings"
	"sync"

	"github.com/tetherkube/tether/recording"
)

// What a bundle must not carry, whatever file it comes from: bearer
// tokens, JWTs, and the values of fields whose names look secret
// (authorization, cookie, token, password, ... as the recorder judges
// names), in text ("token=abc", `"password": "x"`) and in JSON.
// Compiled when first used: not at every start of the CLI.
var secrets = sync.OnceValue(func() (r struct{ bearer, jwt, pair *regexp.Regexp }) {
	r.bearer = regexp.MustCompile(`(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{4,}`)
	r.jwt = regexp.MustCompile(`\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*`)
	// name, then = or : with optional quotes and spaces, then the value.
	r.pair = regexp.MustCompile(`(?i)("?)([A-Za-z0-9_.-]*(?:authorization|cookie|token|passw(?:or)?d|secret|api[-_]?key|credential)[A-Za-z0-9_.-]*)("?\s*[:=]\s*"?)([^"\s,;&}]+)`)
	return r
})

// redactText removes secrets from free text (log lines).
func redactText(b []byte) []byte {
	re := secrets()
	b = re.bearer.ReplaceAll(b, []byte("${1} "+recording.Redacted))
	b = re.jwt.ReplaceAll(b, []byte(recording.Redacted))
	return re.pair.ReplaceAllFunc(b, func(m []byte) []byte {
		sub := re.pair.FindSubmatch(m)
		if v := strings.ToLower(string(sub[4])); v == strings.ToLower(recording.Redacted) || v == "bearer" || v == "basic" {
			return m // already redacted, or an auth scheme followed by its redacted credentials
		}
		return append(append(append(append([]byte{}, sub[1]...), sub[2]...), sub[3]...), recording.Redacted...)
	})
}

// redactValue removes secrets from a decoded JSON value in place: fields
// whose names look secret, and the value of a {"name": N, "value": V}
// pair (a container's env) whose N does; strings are redacted as text.
func redactValue(v any) any {
	var r recording.Redactor
	switch t := v.(type) {
	case map[string]any:
		if name, ok := t["name"].(string); ok && r.Secret(name) {
			if _, has := t["value"]; has {
				t["value"] = recording.Redacted
			}
		}
		for k, x := range t {
			if r.Secret(k) {
				t[k] = recording.Redacted
				continue
			}
			t[k] = redactValue(x)
		}
		return t
	case []any:
		for i := range t {
			t[i] = redactValue(t[i])
		}
		return t
	case string:
		// A string may hold JSON itself (a journal's recorded template).
		var inner any
		if len(t) > 1 && (t[0] == '{' || t[0] == '[') && json.Unmarshal([]byte(t), &inner) == nil {
			b, err := json.Marshal(redactValue(inner))
			if err == nil {
				return string(b)
			}
		}
		return string(redactText([]byte(t)))
	}
	return v
}
