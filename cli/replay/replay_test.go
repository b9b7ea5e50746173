package replay

import (
	"bytes"
	"strings"
	"testing"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/replay"
)

func TestValidate(t *testing.T) {
	ok := func() Options {
		return Options{Workload: "orders", Refs: []string{"x2x.1"}, To: "local:8080", Count: 1, Conc: 1}
	}
	tests := []struct {
		name string
		edit func(*Options)
		want string
	}{
		{"valid", func(*Options) {}, ""},
		{"no --to", func(o *Options) { o.To = "" }, "--to is required"},
		{"bad --to", func(o *Options) { o.To = "ftp://x" }, "--to"},
		{"bad port", func(o *Options) { o.To = "local:0" }, "local:PORT"},
		{"nothing selected", func(o *Options) { o.Workload, o.Refs = "", nil }, "--from FILE"},
		{"ids with --from", func(o *Options) { o.From = "f.json" }, "no IDs"},
		{"cluster without workload", func(o *Options) { o.Workload, o.Refs, o.From, o.To = "", nil, "f.har", "cluster" }, "needs the WORKLOAD"},
		{"rate and speed", func(o *Options) { o.Rate, o.Speed = "5/s", "2x" }, "exclude"},
		{"bad rate", func(o *Options) { o.Rate = "fast" }, "--rate"},
		{"bad speed", func(o *Options) { o.Speed = "-1x" }, "--speed"},
		{"zero count", func(o *Options) { o.Count = 0 }, "at least 1"},
		{"bad header", func(o *Options) { o.Headers = []string{"NoColon"} }, "Name: value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := ok()
			tt.edit(&o)
			err := o.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || cmdutil.ExitCode(err) != cmdutil.ExitUser {
				t.Errorf("got %v (exit %d), want a user error containing %q", err, cmdutil.ExitCode(err), tt.want)
			}
		})
	}
}

func TestPrintResultEscapesControlCharacters(t *testing.T) {
	const esc = "\x1b]0;owned\x07\u009b2J\u202e"
	var out bytes.Buffer
	o := &Options{IOStreams: genericiooptions.IOStreams{Out: &out}, Count: 2}
	for _, r := range []replay.Result{
		{Ref: "x2x.1" + esc, Method: "GET" + esc, Target: "/a\n" + esc, Status: 200,
			Diff: &replay.Diff{Status: "1 -> 2", Headers: []string{"X: " + esc}, Trailers: []string{"Grpc-Message: " + esc}, Body: []string{"$.a" + esc}, NotCompared: []string{esc}}},
		{Ref: "x2x.4", Method: "POST", Target: "/g", Status: 200, GRPCStatus: "5" + esc},
		{Ref: "x2x.2", Method: "GET", Target: "/", Error: "malformed " + esc},
		{Ref: "x2x.3", Method: "GET", Target: "/", Skipped: "skip " + esc},
	} {
		printResult(o, r)
	}
	for i, r := range out.String() {
		if r != '\n' && (r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\u202e') {
			t.Fatalf("output holds %U at byte %d:\n%q", r, i, out.String())
		}
	}
	if got := strings.Count(out.String(), "\n"); got != 9 {
		t.Errorf("%d lines, want 9:\n%s", got, out.String())
	}
}
