// Command nxdns answers every DNS query with NXDOMAIN, at once, on the
// node's address (UDP and TCP port 53). The local cluster has no upstream
// resolver: CoreDNS forwards the names outside the cluster to the node, and
// with nothing answering there each such lookup waited about 2 s and ended
// in SERVFAIL, which real clients mistake for a broken network (grpc-go's
// resolver looks up _grpc_config.NAME's TXT record before it connects).
// A cluster with no way out answers as an isolated resolver would: the
// name does not exist. Nothing leaves the machine.
package main

import (
	"encoding/binary"
	"errors"
	"io"
	"log"
	"net"
	"os"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

func main() {
	addr := net.JoinHostPort(os.Getenv("HOST_IP"), "53")
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		log.Fatal(err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("answering NXDOMAIN on %s (udp, tcp)", addr)
	go serveTCP(l)
	buf := make([]byte, 65535)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			log.Fatal(err)
		}
		if out, ok := answer(buf[:n]); ok {
			pc.WriteTo(out, from)
		}
	}
}

func serveTCP(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			defer c.Close()
			for {
				c.SetDeadline(time.Now().Add(10 * time.Second))
				var n uint16
				if err := binary.Read(c, binary.BigEndian, &n); err != nil {
					return
				}
				q := make([]byte, n)
				if _, err := io.ReadFull(c, q); err != nil {
					return
				}
				out, ok := answer(q)
				if !ok {
					return
				}
				if err := binary.Write(c, binary.BigEndian, uint16(len(out))); err != nil {
					return
				}
				if _, err := c.Write(out); err != nil {
					return
				}
			}
		}()
	}
}

// answer is q's NXDOMAIN: its id, question and RD bit, no records.
func answer(q []byte) ([]byte, bool) {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil || h.Response {
		return nil, false
	}
	questions, err := p.AllQuestions()
	if err != nil && !errors.Is(err, dnsmessage.ErrSectionDone) {
		return nil, false
	}
	rcode := dnsmessage.RCodeNameError
	if h.OpCode != 0 {
		rcode = dnsmessage.RCodeNotImplemented
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, OpCode: h.OpCode,
		RecursionDesired: h.RecursionDesired, RecursionAvailable: true, RCode: rcode})
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, false
	}
	for _, qq := range questions {
		if err := b.Question(qq); err != nil {
			return nil, false
		}
	}
	out, err := b.Finish()
	return out, err == nil
}
