package portforward

import (
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
)

// pairConnection is an httpstream.Connection whose streams are pipes; it
// records each stream's type and request ID, and keeps the kubelet's ends.
type pairConnection struct {
	fakeConnection
	created []string
	pods    []net.Conn
}

func (c *pairConnection) CreateStream(h http.Header) (httpstream.Stream, error) {
	c.created = append(c.created, h.Get(corev1.StreamType)+"/"+h.Get(corev1.PortForwardRequestIDHeader))
	a, b := net.Pipe()
	c.pods = append(c.pods, b)
	return pipeStream{a}, nil
}

// TestEarlyTry: an Early's first Try takes the error stream opened with
// it; a Try whose port nobody listens on ends (the kubelet says so on the
// error stream) without ending the connection, and the next Try opens a
// pair of its own; the Conn handed the connection (Own) closes it.
func TestEarlyTry(t *testing.T) {
	conn := &pairConnection{fakeConnection: fakeConnection{done: make(chan bool)}}
	errStream, _ := conn.CreateStream(streamHeaders(corev1.StreamTypeError, 7340, 0))
	e := &Early{conn: conn, namespace: "ns", pod: "p", port: 7340, errStream: errStream, opened: time.Now(), next: 1}

	first, err := e.Try()
	if err != nil {
		t.Fatal(err)
	}
	// The kubelet: nothing listens on the port.
	go func() {
		io.WriteString(conn.pods[0], "error forwarding port 7340: connection refused")
		conn.pods[0].Close()
	}()
	if _, err := first.Read(make([]byte, 1)); err == nil {
		t.Fatal("a Conn whose port nobody listens on read data")
	}
	select {
	case <-conn.CloseChan():
		t.Fatal("a failed Try closed the Early's connection")
	case <-time.After(50 * time.Millisecond):
	}

	second, err := e.Try()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := conn.created, []string{"error/0", "data/0", "error/1", "data/1"}; !equal(got, want) {
		t.Errorf("streams created %v, want %v", got, want)
	}
	e.Own(second)
	second.Close()
	select {
	case <-conn.CloseChan():
	case <-time.After(time.Second):
		t.Fatal("closing the Conn that owns the Early's connection left it open")
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
