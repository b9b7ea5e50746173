package netns

import (
	"net"
	"testing"
)

func TestListenDiag(t *testing.T) {
	d, err := openListenDiag()
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	l := listenLocal(t)
	port := uint16(l.Addr().(*net.TCPAddr).Port)
	c, err := net.Dial("tcp", l.Addr().String()) // a connection is not a listener
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ports, err := d.ports()
	if err != nil {
		t.Fatal(err)
	}
	if !ports[portKey{port: port}] {
		t.Errorf("sock_diag does not list 127.0.0.1:%d; got %v", port, ports)
	}
	if cport := uint16(c.LocalAddr().(*net.TCPAddr).Port); ports[portKey{port: cport}] {
		t.Errorf("sock_diag lists the connection's port %d as listening", cport)
	}
	l.Close()
	if ports, _ = d.ports(); ports[portKey{port: port}] {
		t.Errorf("sock_diag still lists the closed 127.0.0.1:%d", port)
	}
}

func BenchmarkListenDiag(b *testing.B) {
	d, err := openListenDiag()
	if err != nil {
		b.Fatal(err)
	}
	defer d.close()
	for b.Loop() {
		if _, err := d.ports(); err != nil {
			b.Fatal(err)
		}
	}
}
