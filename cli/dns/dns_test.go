package dns

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/cli/cmdutil/cmdtest"
	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/internal/dnswatch"
)

func TestNewCmdDNS(t *testing.T) {
	type flags struct {
		Pod, Ns, Output string
		Duration        time.Duration
		Count           int
	}
	tests := []struct {
		name    string
		args    []string
		want    flags
		wantErr string
	}{
		{name: "defaults", args: []string{"orders-1"}, want: flags{Pod: "orders-1", Ns: "shop"}},
		{name: "bounded, json", args: []string{"orders-1", "--duration", "30s", "--count", "10", "-o", "json"},
			want: flags{Pod: "orders-1", Ns: "shop", Output: "json", Duration: 30 * time.Second, Count: 10}},
		{name: "negative count", args: []string{"orders-1", "--count", "-1"}, wantErr: "--duration and --count must not be negative"},
		{name: "no pod", args: nil, wantErr: "accepts 1 arg(s), received 0: dns POD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			streams, _, _ := cmdtest.Streams()
			var got *DNSOptions
			cmd := NewCmdDNS(cmdtest.Factory(t, streams), func(_ context.Context, o *DNSOptions) error { got = o; return nil })
			err := cmdtest.Exec(cmd, tt.args...)
			if tt.wantErr != "" {
				cmdtest.WantError(t, err, cmdutil.ExitUser, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, flags{got.Pod, got.Ns, got.Output, got.Duration, got.Count}); diff != "" {
				t.Errorf("options (-want +got):\n%s", diff)
			}
			if got.AgentImage == "" || got.Now == nil {
				t.Error("no default agent image or clock")
			}
		})
	}
}

func TestDNSValidate(t *testing.T) {
	tests := []struct {
		name string
		o    DNSOptions
		want string
	}{
		{"valid", DNSOptions{Pod: "orders-1", Count: 3, Duration: time.Second}, ""},
		{"negative duration", DNSOptions{Pod: "orders-1", Duration: -time.Second}, "--duration and --count must not be negative"},
		{"bad output", DNSOptions{Pod: "orders-1", Output: "xml"}, `unknown output format "xml"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.o.Validate()
			if tt.want == "" && err != nil {
				t.Fatal(err)
			}
			if tt.want != "" {
				cmdtest.WantError(t, err, cmdutil.ExitUser, tt.want)
			}
		})
	}
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// lookups are a query never answered, then a slow answered one.
func lookups(t *testing.T) []agent.CapturedPacket {
	client, server := netip.MustParseAddrPort("10.42.0.5:40000"), netip.MustParseAddrPort("10.43.0.10:53")
	client2 := netip.MustParseAddrPort("10.42.0.5:40001")
	frame := func(src, dst netip.AddrPort, payload []byte) []byte { return cmdtest.UDPFrame(t, src, dst, payload) }
	ps := []agent.CapturedPacket{
		{Timestamp: t0, Data: frame(client2, server, cmdtest.DNSPayload(t, 8, "billing.shop.svc.cluster.local", netip.Addr{}))},
		{Timestamp: t0.Add(time.Second), Data: frame(client, server, cmdtest.DNSPayload(t, 7, "orders.shop.svc.cluster.local", netip.Addr{}))},
		{Timestamp: t0.Add(time.Second + 150*time.Millisecond), Data: frame(server, client, cmdtest.DNSPayload(t, 7, "orders.shop.svc.cluster.local", netip.MustParseAddr("10.43.0.7")))},
	}
	for i := range ps {
		ps[i].Length = len(ps[i].Data)
	}
	return ps
}

func run(t *testing.T, o *DNSOptions, capErr error) (daemon.CaptureRequest, string, error) {
	t.Helper()
	var got daemon.CaptureRequest
	fake := &cmdtest.FakeService{CaptureFunc: func(ctx context.Context, req daemon.CaptureRequest, _ func(string), emit func(agent.CapturedPacket) error) (agent.CaptureStats, error) {
		got = req
		if capErr != nil {
			return agent.CaptureStats{}, capErr
		}
		for _, p := range lookups(t) {
			if err := emit(p); err != nil {
				return agent.CaptureStats{}, err
			}
			if ctx.Err() != nil {
				return agent.CaptureStats{}, ctx.Err()
			}
		}
		return agent.CaptureStats{}, nil
	}}
	streams, out, _ := cmdtest.Streams()
	o.IOStreams, o.Pod, o.Ns, o.AgentImage = streams, "orders-1", "shop", "img"
	o.DaemonService = cmdtest.ServeDaemon(t, fake)
	o.Now = func() time.Time { return t0.Add(2 * time.Second) }
	err := o.Run(context.Background())
	return got, out.String(), err
}

func TestDNSRun(t *testing.T) {
	req, out, err := run(t, &DNSOptions{Duration: time.Minute}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(daemon.CaptureRequest{Namespace: "shop", Pod: "orders-1", Filter: "udp port 53", Snaplen: 65535, Duration: time.Minute, AgentImage: "img"}, req); diff != "" {
		t.Errorf("request (-want +got):\n%s", diff)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 2 || !strings.HasSuffix(lines[0], " in 150ms SLOW") || !strings.Contains(lines[0], "10.43.0.7") ||
		!strings.HasSuffix(lines[1], "no answer") || !strings.Contains(lines[1], "billing.shop.svc.cluster.local") {
		t.Errorf("output:\n%s", out)
	}

	_, out, err = run(t, &DNSOptions{Output: "json"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(out))
	var got []dnswatch.Exchange
	for dec.More() {
		var ex dnswatch.Exchange
		if err := dec.Decode(&ex); err != nil {
			t.Fatalf("-o json: %v\n%s", err, out)
		}
		got = append(got, ex)
	}
	if len(got) != 2 || !got[0].Answered || got[0].Latency != 150*time.Millisecond || got[1].Answered || got[1].ID != 8 {
		t.Errorf("-o json: %+v", got)
	}

	_, out, err = run(t, &DNSOptions{Output: "yaml"}, nil)
	if err != nil || strings.Count(out, "---\n") != 2 {
		t.Errorf("-o yaml is a stream of 2 documents: %v\n%s", err, out)
	}
}

func TestDNSRunStopsAtCount(t *testing.T) {
	_, out, err := run(t, &DNSOptions{Count: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out, "\n"); n != 1 {
		t.Errorf("--count 1 printed %d lines:\n%s", n, out)
	}
}

func TestDNSRunErrors(t *testing.T) {
	_, _, err := run(t, &DNSOptions{}, errors.New("agent stream broke"))
	cmdtest.WantError(t, err, cmdutil.ExitInternal, "agent stream broke (details: `tether logs`)")
}
