package netns

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLoopbackPorts(t *testing.T) {
	got := loopbackPorts([]netip.AddrPort{
		netip.MustParseAddrPort("127.0.0.1:5432"),
		netip.MustParseAddrPort("0.0.0.0:80"),
		netip.MustParseAddrPort("192.168.1.5:443"), // not loopback
		netip.MustParseAddrPort("[::1]:3000"),
		netip.MustParseAddrPort("[::]:8000"),
		netip.MustParseAddrPort("[::ffff:127.0.0.1]:9000"),
		netip.MustParseAddrPort("[fd00::1]:9443"), // not loopback
	})
	want := map[portKey]bool{
		{port: 5432}:           true,
		{port: 80}:             true,
		{v6: true, port: 3000}: true,
		{v6: true, port: 8000}: true, // [::]:8000 takes IPv4 too
		{port: 8000}:           true,
		{port: 9000}:           true,
	}
	if d := cmp.Diff(want, got, cmp.AllowUnexported(portKey{})); d != "" {
		t.Errorf("loopbackPorts (-want +got):\n%s", d)
	}
}
