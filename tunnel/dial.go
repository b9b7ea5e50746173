package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
)

// Dial asks the peer to connect to addr and returns that connection,
// carried by a dial stream (spec.md, role 3).
func (s *Session) Dial(ctx context.Context, addr string) (net.Conn, error) {
	st, err := s.Open(ctx, RoleDial, []byte(addr))
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { st.Close() })
	defer stop()
	var status [1]byte
	if _, err := io.ReadFull(st, status[:]); err != nil {
		st.Close()
		return nil, fmt.Errorf("dial %s through the tunnel: %w", addr, err)
	}
	if status[0] != 0 {
		reason, _ := io.ReadAll(io.LimitReader(st, 1024))
		st.Close()
		return nil, fmt.Errorf("dial %s from the pod: %s", addr, reason)
	}
	return st, nil
}

// ServeDial answers a dial stream: it connects to the address in the
// stream's metadata with dial and joins the two, or tells the opener why
// it could not.
func ServeDial(ctx context.Context, st *Stream, dial func(ctx context.Context, addr string) (net.Conn, error)) error {
	if st.Role != RoleDial {
		st.Close()
		return errors.New("not a dial stream")
	}
	c, err := dial(ctx, string(st.Meta))
	if err != nil {
		st.Write(append([]byte{1}, err.Error()...))
		st.Close()
		return err
	}
	if _, err := st.Write([]byte{0}); err != nil {
		c.Close()
		st.Close()
		return err
	}
	_, _, err = Join(st, c)
	return err
}
