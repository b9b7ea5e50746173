package tunnel

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// recordConn records each Write as one message.
type recordConn struct {
	net.Conn
	writes [][]byte
}

func (r *recordConn) Write(p []byte) (int, error) {
	r.writes = append(r.writes, bytes.Clone(p))
	return len(p), nil
}

func header(typ byte, length uint32) []byte {
	h := make([]byte, yamuxHeaderLen)
	h[0], h[1] = 0, typ
	binary.BigEndian.PutUint32(h[4:8], 3)
	binary.BigEndian.PutUint32(h[8:12], length)
	return h
}

func TestCoalescingConn(t *testing.T) {
	rec := &recordConn{}
	c := newCoalescingConn(rec)
	data := header(yamuxTypeData, 5)
	ping := header(2, 0)                  // a ping: no body follows
	emptyData := header(yamuxTypeData, 0) // a window-update-like data frame with flags only
	for _, p := range [][]byte{data, []byte("hello"), ping, emptyData, data, []byte("again")} {
		if n, err := c.Write(p); err != nil || n != len(p) {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	want := [][]byte{append(bytes.Clone(data), "hello"...), ping, emptyData, append(bytes.Clone(data), "again"...)}
	if diff := cmp.Diff(want, rec.writes); diff != "" {
		t.Errorf("writes (-want +got):\n%s", diff)
	}
}
