package resolvconf

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// podResolvConf is what the kubelet writes for a ClusterFirst pod.
const podResolvConf = `search shop.svc.cluster.local svc.cluster.local cluster.local
nameserver 10.43.0.10
options ndots:5
`

func TestParse(t *testing.T) {
	c, err := Parse(strings.NewReader(podResolvConf + "# comment\nsortlist 10.0.0.0\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Nameservers: []string{"10.43.0.10"}, Search: []string{"shop.svc.cluster.local", "svc.cluster.local", "cluster.local"},
		Ndots: 5, Options: []string{"ndots:5"}}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, err := Parse(strings.NewReader("options ndots:x\n")); err == nil {
		t.Error("a malformed ndots was accepted")
	}
	if c, _ := Parse(strings.NewReader("domain a.b\nsearch c.d\n")); !cmp.Equal(c.Search, []string{"c.d"}) {
		t.Errorf("the last search line must win: %v", c.Search)
	}
}

func TestCandidates(t *testing.T) {
	c, _ := Parse(strings.NewReader(podResolvConf))
	tests := []struct {
		name string
		want []string
	}{
		{"orders", []string{"orders.shop.svc.cluster.local.", "orders.svc.cluster.local.", "orders.cluster.local.", "orders."}},
		// 4 dots < ndots 5: the search list still comes first (the
		// expansion storm tether's dns view points out).
		{"orders.shop.svc.cluster.local", []string{"orders.shop.svc.cluster.local.shop.svc.cluster.local.",
			"orders.shop.svc.cluster.local.svc.cluster.local.", "orders.shop.svc.cluster.local.cluster.local.", "orders.shop.svc.cluster.local."}},
		{"orders.shop.svc.cluster.local.", []string{"orders.shop.svc.cluster.local."}},
		{"a.b.c.d.e.f", []string{"a.b.c.d.e.f.", "a.b.c.d.e.f.shop.svc.cluster.local.", "a.b.c.d.e.f.svc.cluster.local.", "a.b.c.d.e.f.cluster.local."}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, c.Candidates(tt.name)); diff != "" {
			t.Errorf("Candidates(%q) (-want +got):\n%s", tt.name, diff)
		}
	}
}
