package netns

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLoopbackPorts(t *testing.T) {
	tcp4 := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1 1 0000000000000000 100 0 0 10 0
   1: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 100 0 0 10 0
   2: 0501A8C0:01BB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 100 0 0 10 0
   3: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 4 1 0000000000000000 100 0 0 10 0
`
	tcp6 := `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:0BB8 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 5 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000000000000:1F40 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 6 1 0000000000000000 100 0 0 10 0
`
	got := loopbackPorts(append(listeners(strings.NewReader(tcp4)), listeners(strings.NewReader(tcp6))...))
	want := map[portKey]bool{
		{port: 5432}:           true, // 127.0.0.1:5432
		{port: 80}:             true, // 0.0.0.0:80
		{v6: true, port: 3000}: true, // [::1]:3000
		{v6: true, port: 8000}: true, // [::]:8000 takes IPv4 too
		{port: 8000}:           true,
		// 192.168.1.5:443 is not loopback; 127.0.0.1:8080 is a connection, not a listener.
	}
	if d := cmp.Diff(want, got, cmp.AllowUnexported(portKey{})); d != "" {
		t.Errorf("loopbackPorts (-want +got):\n%s", d)
	}
}
