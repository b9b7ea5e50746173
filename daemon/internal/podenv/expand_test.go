package podenv

import "testing"

func TestExpand(t *testing.T) {
	vars := map[string]string{"A": "alpha", "B": "$(A)", "EMPTY": "", "": "blank"}
	lookup := func(n string) (string, bool) { v, ok := vars[n]; return v, ok }
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"plain", "plain"},
		{"$(A)", "alpha"},
		{"x$(A)y$(A)z", "xalphayalphaz"},
		{"$(B)", "$(A)"}, // a value is not expanded twice
		{"$(EMPTY)x", "x"},
		{"$(UNDEFINED)", "$(UNDEFINED)"},
		{"$$(A)", "$(A)"}, // escaped
		{"$$$(A)", "$alpha"},
		{"$$$$", "$$"},
		{"$", "$"},
		{"a$", "a$"},
		{"$A", "$A"},
		{"$(A", "$(A"}, // unclosed
		{"$(A$(A)", "$(A$(A)"},
		{"$()", "blank"},
		{"$(A)$", "alpha$"},
		{"$)", "$)"},
		{"100$ off", "100$ off"},
		// The kubelet's byte-as-character quirk: é is C3 A9; the C3 comes
		// back as U+00C3 (C3 83), then the A9 follows.
		{"$é", "$\u00c3\xa9"},
	} {
		if got := expand(tc.in, lookup); got != tc.want {
			t.Errorf("expand(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
