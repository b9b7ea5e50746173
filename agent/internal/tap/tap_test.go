package tap

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/tetherkube/tether/agent/internal/httprec"
	"github.com/tetherkube/tether/recording"
)

// TestTapRecordsFromPackets: a tap on the loopback records what Go's HTTP
// client and server exchange over a keep-alive connection that passes
// nowhere near it, drops the kubelet's probes, and does not record a
// connection opened before it started.
func TestTapRecordsFromPackets(t *testing.T) {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Path", r.URL.Path)
		io.WriteString(w, "hello "+r.URL.Path)
	})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	port := l.Addr().(*net.TCPAddr).Port
	base := "http://127.0.0.1:" + strconv.Itoa(port)

	// A connection open before the tap starts: not recorded.
	early := &http.Client{Transport: &http.Transport{}}
	get(t, early, base+"/before")

	ring := httprec.NewRing(8 << 20)
	tp, err := Start(Config{Ports: map[int]int{port: 17000}, Pod: "p", Ring: ring, Options: httprec.DefaultOptions(), Interfaces: []string{"lo"}})
	if errors.Is(err, ErrNoPermission) && os.Geteuid() != 0 {
		t.Skip("needs CAP_NET_RAW (make test runs as root)")
	}
	if err != nil {
		t.Fatal(err)
	}
	get(t, early, base+"/mid-stream")
	client := &http.Client{Transport: &http.Transport{}}
	for i := range 3 {
		get(t, client, fmt.Sprintf("%s/r%d", base, i))
	}
	req, _ := http.NewRequest("GET", base+"/healthz", nil)
	req.Header.Set("User-Agent", "kube-probe/1.31")
	if resp, err := client.Do(req); err != nil {
		t.Fatal(err)
	} else {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	client.CloseIdleConnections()
	early.CloseIdleConnections()

	var got []string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		exs, err := ring.Exchanges(func(*recording.Exchange) bool { return true })
		if err != nil {
			t.Fatal(err)
		}
		got = got[:0]
		for _, ex := range exs {
			line := ex.Request.Target
			if ex.Response != nil {
				line += " " + strconv.Itoa(ex.Response.Status) + " " + string(ex.Response.Body)
			}
			got = append(got, line)
		}
		if len(got) >= 3 && tp.Stats().MidStream >= 1 {
			break
		}
	}
	tp.Close()
	want := []string{"/r0 200 hello /r0", "/r1 200 hello /r1", "/r2 200 hello /r2"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("recorded %q, want %q", got, want)
	}
	if st := tp.Stats(); st.Conns != 1 || st.MidStream != 1 || st.Packets == 0 {
		t.Errorf("stats %+v: want 1 connection recorded, 1 seen mid-stream, packets counted", st)
	}
}

func get(t *testing.T, c *http.Client, url string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// TestDecode reads frames gopacket built: IPv4 and IPv6 TCP segments, and
// refuses a fragment and UDP.
func TestDecode(t *testing.T) {
	eth := func(typ layers.EthernetType) *layers.Ethernet {
		return &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: typ}
	}
	tcp := &layers.TCP{SrcPort: 40000, DstPort: 8080, Seq: 4000000000, SYN: true, ACK: true, Window: 100}
	build := func(ls ...gopacket.SerializableLayer) []byte {
		buf := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
			t.Fatal(err)
		}
		// Ethernet pads short frames: the IP length must bound the payload.
		return append(buf.Bytes(), 0, 0, 0, 0)
	}
	v4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: net.IP{10, 42, 0, 9}, DstIP: net.IP{10, 42, 0, 7}}
	tcp.SetNetworkLayerForChecksum(v4)
	s, ok := decode(build(eth(layers.EthernetTypeIPv4), v4, tcp, gopacket.Payload("GET /")))
	want := Segment{Src: netip.MustParseAddrPort("10.42.0.9:40000"), Dst: netip.MustParseAddrPort("10.42.0.7:8080"),
		Seq: 4000000000, SYN: true, ACK: true, Payload: []byte("GET /")}
	if !ok || fmt.Sprint(s) != fmt.Sprint(want) {
		t.Errorf("IPv4: %v %+v, want %+v", ok, s, want)
	}

	v6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP,
		SrcIP: net.ParseIP("fd00::9"), DstIP: net.ParseIP("fd00::7")}
	tcp.SetNetworkLayerForChecksum(v6)
	tcp.SYN, tcp.FIN = false, true
	s, ok = decode(build(eth(layers.EthernetTypeIPv6), v6, tcp, gopacket.Payload("x")))
	want = Segment{Src: netip.MustParseAddrPort("[fd00::9]:40000"), Dst: netip.MustParseAddrPort("[fd00::7]:8080"),
		Seq: 4000000000, FIN: true, ACK: true, Payload: []byte("x")}
	if !ok || fmt.Sprint(s) != fmt.Sprint(want) {
		t.Errorf("IPv6: %v %+v, want %+v", ok, s, want)
	}

	frag := *v4
	frag.Flags = layers.IPv4MoreFragments
	if _, ok := decode(build(eth(layers.EthernetTypeIPv4), &frag, tcp, gopacket.Payload("x"))); ok {
		t.Error("a fragment decoded")
	}
	udp := &layers.UDP{SrcPort: 1, DstPort: 8080}
	u4 := *v4
	u4.Protocol = layers.IPProtocolUDP
	udp.SetNetworkLayerForChecksum(&u4)
	if _, ok := decode(build(eth(layers.EthernetTypeIPv4), &u4, udp, gopacket.Payload("x"))); ok {
		t.Error("UDP decoded")
	}
}
