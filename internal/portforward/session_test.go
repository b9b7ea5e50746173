package portforward

import (
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
)

// streamConnection is an httpstream.Connection whose streams are pipes; it
// records the streams asked for and whether it was closed.
type streamConnection struct {
	mu      sync.Mutex
	created []string // "TYPE PORT"
	closed  bool
	done    chan bool
}

func (c *streamConnection) CreateStream(h http.Header) (httpstream.Stream, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.created = append(c.created, h.Get(corev1.StreamType)+" "+h.Get(corev1.PortHeader))
	a, b := net.Pipe()
	go func() { // the pod's end: reads until closed
		buf := make([]byte, 64)
		for {
			if _, err := b.Read(buf); err != nil {
				return
			}
		}
	}()
	return pipeStream{a}, nil
}

func (c *streamConnection) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed = true
		close(c.done)
	}
	return nil
}
func (c *streamConnection) CloseChan() <-chan bool             { return c.done }
func (c *streamConnection) SetIdleTimeout(time.Duration)       {}
func (c *streamConnection) RemoveStreams(...httpstream.Stream) {}

func (c *streamConnection) state() ([]string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.created...), c.closed
}

// TestPodConn: an API connection opened ahead carries one connection,
// which owns it; one never used closes with Close.
func TestPodConn(t *testing.T) {
	conn := &streamConnection{done: make(chan bool)}
	p := &PodConn{conn: conn, namespace: "shop", pod: "orders-1"}
	c, err := p.Dial(7342)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Dial(7342); err == nil {
		t.Errorf("a second connection on one API connection")
	}
	p.Close()
	if _, closed := conn.state(); closed {
		t.Fatalf("Close closed the API connection its connection owns")
	}
	c.Close()
	created, closed := conn.state()
	if !closed {
		t.Errorf("closing the connection left its API connection open")
	}
	if diff := cmp.Diff([]string{"error 7342", "data 7342"}, created); diff != "" {
		t.Errorf("streams (-want +got):\n%s", diff)
	}

	unused := &streamConnection{done: make(chan bool)}
	(&PodConn{conn: unused}).Close()
	if _, closed := unused.state(); !closed {
		t.Errorf("an API connection never used stays open after Close")
	}
}
