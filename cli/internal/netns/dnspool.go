package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
)

// dnsPool keeps a few TCP connections to the pod's nameserver, each
// carrying many queries at once (RFC 7766 pipelining): a query gets an ID
// unique on its connection, and the answer is matched by that ID and given
// the query's own ID back.
type dnsPool struct {
	dial    func(ctx context.Context, addr string) (net.Conn, error)
	servers []string

	mu    sync.Mutex
	conns [dnsConns]*dnsConn
	next  int
	shut  bool
}

type dnsConn struct {
	c       net.Conn
	wmu     sync.Mutex
	mu      sync.Mutex
	pending map[uint16]chan []byte
	id      uint16
	err     error // set once the connection is dead
}

func (p *dnsPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.shut = true
	for _, c := range p.conns {
		if c != nil {
			c.c.Close()
		}
	}
}

// conn returns a live connection, dialing one if needed.
func (p *dnsPool) conn(ctx context.Context) (*dnsConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shut {
		return nil, errors.New("resolver closed")
	}
	i := p.next
	p.next = (p.next + 1) % dnsConns
	if c := p.conns[i]; c != nil && c.alive() {
		return c, nil
	}
	var errs []error
	for _, s := range p.servers {
		nc, err := p.dial(ctx, s)
		if err != nil {
			errs = append(errs, fmt.Errorf("dial the pod's nameserver %s: %w", s, err))
			continue
		}
		c := &dnsConn{c: nc, pending: map[uint16]chan []byte{}}
		go c.readLoop()
		p.conns[i] = c
		return c, nil
	}
	if len(errs) == 0 {
		return nil, errors.New("the pod's resolv.conf has no nameserver")
	}
	return nil, errors.Join(errs...)
}

func (c *dnsConn) alive() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err == nil
}

func (c *dnsConn) readLoop() {
	for {
		m, err := readMsg(c.c)
		if err != nil {
			c.fail(err)
			return
		}
		if len(m) < 2 {
			continue
		}
		id := uint16(m[0])<<8 | uint16(m[1])
		c.mu.Lock()
		ch := c.pending[id]
		delete(c.pending, id)
		c.mu.Unlock()
		if ch != nil {
			ch <- m
		}
	}
}

func (c *dnsConn) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
	for id, ch := range c.pending {
		close(ch)
		delete(c.pending, id)
	}
	c.c.Close()
}

func (c *dnsConn) exchange(ctx context.Context, q []byte) ([]byte, error) {
	ch := make(chan []byte, 1)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return nil, c.err
	}
	id := c.id
	for {
		id++
		if _, used := c.pending[id]; !used {
			break
		}
	}
	c.id = id
	c.pending[id] = ch
	c.mu.Unlock()

	m := append([]byte(nil), q...)
	m[0], m[1] = byte(id>>8), byte(id)
	c.wmu.Lock()
	err := writeMsg(c.c, m)
	c.wmu.Unlock()
	if err != nil {
		c.fail(err)
		return nil, err
	}
	select {
	case resp, ok := <-ch:
		if !ok {
			return nil, fmt.Errorf("the pod's nameserver connection closed: %w", c.errNow())
		}
		resp[0], resp[1] = q[0], q[1]
		return resp, nil
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		return nil, ctx.Err()
	}
}

func (c *dnsConn) errNow() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// exchange sends q to the pod's nameserver; a dead connection is
// replaced once.
func (p *dnsPool) exchange(ctx context.Context, q []byte) ([]byte, error) {
	if len(q) < 12 {
		return nil, errors.New("short query")
	}
	var err error
	for range 2 {
		var c *dnsConn
		c, err = p.conn(ctx)
		if err != nil {
			return nil, err
		}
		var resp []byte
		resp, err = c.exchange(ctx, q)
		if err == nil || ctx.Err() != nil {
			return resp, err
		}
	}
	return nil, err
}
