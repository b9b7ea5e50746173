package capture

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/cli/cmdutil/cmdtest"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/errdefs"
)

func TestNewCmdCapture(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		args    []string
		want    CaptureOptions
		wantErr string
	}{
		{name: "defaults", args: []string{"orders-1"},
			want: CaptureOptions{Pod: "orders-1", Interface: "eth0", Snaplen: 262144, Ns: "shop"}},
		{name: "every flag", args: []string{"pod/orders-1", "-c", "app", "--interface", "lo", "--filter", "tcp port 80", "-w", filepath.Join(dir, "x.pcap"),
			"--count", "5", "--duration", "10s", "--snaplen", "96", "--agent-image", "img"},
			want: CaptureOptions{Pod: "pod/orders-1", Container: "app", Interface: "lo", Filter: "tcp port 80", Write: filepath.Join(dir, "x.pcap"),
				Count: 5, Duration: 10 * time.Second, Snaplen: 96, AgentImage: "img", Ns: "shop"}},
		{name: "json", args: []string{"orders-1", "-o", "json"},
			want: CaptureOptions{Pod: "orders-1", Interface: "eth0", Snaplen: 262144, Ns: "shop", Output: "json"}},
		{name: "missing folder", args: []string{"orders-1", "-w", "/nonexistent-dir/x.pcap"}, wantErr: "cannot write /nonexistent-dir/x.pcap: folder /nonexistent-dir does not exist"},
		{name: "a folder", args: []string{"orders-1", "-w", dir}, wantErr: "it is a folder"},
		{name: "no pod", args: nil, wantErr: "accepts 1 arg(s), received 0: capture POD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			streams, _, _ := cmdtest.Streams()
			var got *CaptureOptions
			cmd := NewCmdCapture(cmdtest.Factory(t, streams), func(_ context.Context, o *CaptureOptions) error { got = o; return nil })
			err := cmdtest.Exec(cmd, tt.args...)
			if tt.wantErr != "" {
				cmdtest.WantError(t, err, cmdutil.ExitUser, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.want.AgentImage == "" {
				tt.want.AgentImage = got.AgentImage
			}
			if diff := cmp.Diff(tt.want, *got, cmdtest.IgnoreDeps); diff != "" {
				t.Errorf("options (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCaptureValidate(t *testing.T) {
	valid := func() CaptureOptions { return CaptureOptions{Pod: "orders-1", Interface: "eth0", Snaplen: 65535} }
	tests := []struct {
		name string
		edit func(*CaptureOptions)
		want string
	}{
		{"valid", func(*CaptureOptions) {}, ""},
		{"filter", func(o *CaptureOptions) { o.Filter = "tcp port 80 and not host 10.0.0.1" }, ""},
		{"bad filter", func(o *CaptureOptions) { o.Filter = "tcp prot 80" }, `at "prot"`},
		{"snaplen zero", func(o *CaptureOptions) { o.Snaplen = 0 }, "--snaplen must be 1 to 262144, got 0"},
		{"snaplen too big", func(o *CaptureOptions) { o.Snaplen = 1 << 20 }, "--snaplen must be 1 to 262144"},
		{"negative duration", func(o *CaptureOptions) { o.Duration = -time.Second }, "--duration must not be negative"},
		{"bad output", func(o *CaptureOptions) { o.Output = "pcap" }, `unknown output format "pcap"`},
		{"-o and -w", func(o *CaptureOptions) { o.Output, o.Write = "json", "-" }, "-w writes pcap and -o json prints packets as json: choose one"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := valid()
			tt.edit(&o)
			err := o.Validate()
			if tt.want == "" && err != nil {
				t.Fatal(err)
			}
			if tt.want != "" {
				cmdtest.WantError(t, err, cmdutil.ExitUser, tt.want)
			}
		})
	}
}

func packets(t *testing.T) []agent.CapturedPacket {
	src, dst := netip.MustParseAddrPort("10.42.0.5:40000"), netip.MustParseAddrPort("10.43.0.10:53")
	frame := cmdtest.UDPFrame(t, src, dst, cmdtest.DNSPayload(t, 7, "orders.shop.svc.cluster.local", netip.Addr{}))
	ts := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return []agent.CapturedPacket{{Timestamp: ts, Length: len(frame), Data: frame}, {Timestamp: ts.Add(time.Millisecond), Length: len(frame), Data: frame}}
}

type captured struct {
	req      daemon.CaptureRequest
	out, err string
}

func run(t *testing.T, o *CaptureOptions, capErr error) (captured, error) {
	t.Helper()
	var c captured
	fake := &cmdtest.FakeService{CaptureFunc: func(_ context.Context, req daemon.CaptureRequest, progress func(string), emit func(agent.CapturedPacket) error) (agent.CaptureStats, error) {
		c.req = req
		progress("adding the capture agent to pod orders-1")
		if capErr != nil {
			return agent.CaptureStats{}, capErr
		}
		for _, p := range packets(t) {
			if err := emit(p); err != nil {
				return agent.CaptureStats{}, err
			}
		}
		return agent.CaptureStats{Received: 2, Dropped: 0}, nil
	}}
	streams, out, errOut := cmdtest.Streams()
	o.IOStreams, o.Ns, o.Pod, o.Snaplen, o.AgentImage = streams, "shop", "orders-1", 65535, "img"
	o.DaemonService = cmdtest.ServeDaemon(t, fake)
	err := o.Run(context.Background())
	c.out, c.err = out.String(), errOut.String()
	return c, err
}

func TestCaptureRun(t *testing.T) {
	ps := packets(t)
	c, err := run(t, &CaptureOptions{Filter: "udp port 53"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(daemon.CaptureRequest{Namespace: "shop", Pod: "orders-1", Filter: "udp port 53", Snaplen: 65535, AgentImage: "img"}, c.req); diff != "" {
		t.Errorf("request (-want +got):\n%s", diff)
	}
	if want := Summary(ps[0]) + "\n" + Summary(ps[1]) + "\n"; c.out != want {
		t.Errorf("output %q, want %q", c.out, want)
	}
	if want := "adding the capture agent to pod orders-1\n2 packets captured; kernel: 2 received by the filter, 0 dropped\n"; c.err != want {
		t.Errorf("stderr %q, want %q", c.err, want)
	}

	c, err = run(t, &CaptureOptions{Output: "json"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(c.out)))
	for i, p := range ps {
		var got Packet
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("-o json packet %d: %v\n%s", i, err, c.out)
		}
		want := Packet{Time: p.Timestamp, Length: p.Length, CapturedLength: len(p.Data), Summary: Summary(p)}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("-o json packet %d (-want +got):\n%s", i, diff)
		}
	}
}

func TestCaptureRunWritesPcap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.pcap")
	o := &CaptureOptions{Write: path, Create: func(name string) (io.WriteCloser, error) { return os.Create(name) }}
	if _, err := run(t, o, nil); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range packets(t) {
		data, ci, err := r.ReadPacketData()
		if err != nil || !bytes.Equal(data, p.Data) || !ci.Timestamp.Equal(p.Timestamp) {
			t.Errorf("packet %d: %v, %d bytes at %s", i, err, len(data), ci.Timestamp)
		}
	}
}

func TestCaptureRunErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.pcap")
	_, err := run(t, &CaptureOptions{Write: path}, errdefs.NotFound(`no pod "orders-1" in namespace shop`))
	cmdtest.WantError(t, err, cmdutil.ExitUser, `no pod "orders-1" in namespace shop`)
	if _, serr := os.Stat(path); serr == nil {
		t.Error("a refused capture left a file behind")
	}
	_, err = run(t, &CaptureOptions{}, errors.New("agent stream broke"))
	cmdtest.WantError(t, err, cmdutil.ExitInternal, "agent stream broke (details: `tether logs`)")
	if m := cmdutil.Message(err); m != "agent stream broke (details: `tether logs`)" {
		t.Errorf("the hint must appear once: %q", m)
	}
}

// TestCaptureFileIsPrivate: a pcap holds every byte on the wire, secrets
// unredacted, so only its user may read it, also when it existed before.
func TestCaptureFileIsPrivate(t *testing.T) {
	for _, existed := range []bool{false, true} {
		path := filepath.Join(t.TempDir(), "out.pcap")
		if existed {
			if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		f, err := createPrivate(path)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
			t.Errorf("existed %v: mode %04o, want 0600", existed, fi.Mode().Perm())
		}
	}
}
