package capture

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/tetherkube/tether/internal/pktfilter"
)

// echoServer accepts on loopback and discards; it returns its port.
func echoServer(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	return l.Addr().(*net.TCPAddr).Port
}

func send(t *testing.T, port int, msg string) {
	t.Helper()
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte(msg))
	c.Close()
}

// TestCaptureLoopbackWithKernelFilter captures real traffic on lo with a
// kernel filter for one port, writes pcap, and reads it back (and with
// tshark, when installed).
func TestCaptureLoopbackWithKernelFilter(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("opening a packet socket needs CAP_NET_RAW; make test runs as root")
	}
	wanted, other := echoServer(t), echoServer(t)
	c, err := Open(Config{Interface: "lo", Filter: fmt.Sprintf("tcp port %d", wanted), Snaplen: DefaultSnaplen})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	var pcap bytes.Buffer
	w := pcapgo.NewWriter(&pcap)
	if err := w.WriteFileHeader(DefaultSnaplen, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	send(t, other, "not this one")
	send(t, wanted, "GET /captured HTTP/1.1\r\n\r\n")
	send(t, other, "nor this one")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // a hang guard
	defer cancel()
	sawPayload := false
	for n := 0; !sawPayload || n < 6; n++ {
		data, ci, err := c.Next(ctx)
		if err != nil {
			t.Fatalf("after %d packets: %v", n, err)
		}
		p := pktfilter.FromFrame(data)
		if p.Proto != pktfilter.TCP || (int(p.SrcPort) != wanted && int(p.DstPort) != wanted) {
			t.Fatalf("the kernel filter let through %+v", p)
		}
		if bytes.Contains(data, []byte("GET /captured")) {
			sawPayload = true
		}
		if err := w.WritePacket(ci, data); err != nil {
			t.Fatal(err)
		}
	}
	if received, _, err := c.Stats(); err != nil || received == 0 {
		t.Errorf("Stats = %d, %v", received, err)
	}

	r, err := pcapgo.NewReader(bytes.NewReader(pcap.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	count := 0
	for {
		if _, _, err := r.ReadPacketData(); err != nil {
			break
		}
		count++
	}
	if count < 6 {
		t.Errorf("pcap holds %d packets, want at least 6", count)
	}
	if tshark, err := exec.LookPath("tshark"); err == nil {
		file := filepath.Join(t.TempDir(), "c.pcap")
		os.WriteFile(file, pcap.Bytes(), 0o600)
		out, err := exec.Command(tshark, "-r", file, "-Y", "http.request", "-T", "fields", "-e", "http.request.uri").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "/captured") {
			t.Errorf("tshark did not read the request from the pcap: %v\n%s", err, out)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (Config{Interface: "eth0", Filter: "tcp port eighty", Snaplen: 100}).Validate(); err == nil || !strings.Contains(err.Error(), `"eighty"`) {
		t.Errorf("bad filter: %v", err)
	}
	if err := (Config{Interface: "eth0", Snaplen: 0}).Validate(); err == nil {
		t.Error("snaplen 0 accepted")
	}
}
