package replay

import (
	"strings"
	"testing"
	"time"

	"github.com/tetherkube/tether/cli/cmdutil"
)

func TestReplayValidate(t *testing.T) {
	ok := func() ReplayOptions {
		return ReplayOptions{Workload: "orders", Refs: []string{"x2x.1"}, To: "local:8080", Count: 1, Conc: 1, Timeout: time.Second}
	}
	tests := []struct {
		name string
		edit func(*ReplayOptions)
		want string
	}{
		{"valid", func(*ReplayOptions) {}, ""},
		{"no --to", func(o *ReplayOptions) { o.To = "" }, "--to is required"},
		{"bad --to", func(o *ReplayOptions) { o.To = "ftp://x" }, "--to"},
		{"bad port", func(o *ReplayOptions) { o.To = "local:0" }, "local:PORT"},
		{"nothing selected", func(o *ReplayOptions) { o.Workload, o.Refs = "", nil }, "--from FILE"},
		{"ids with --from", func(o *ReplayOptions) { o.From = "f.json" }, "no IDs"},
		{"cluster without workload", func(o *ReplayOptions) { o.Workload, o.Refs, o.From, o.To = "", nil, "f.har", "cluster" }, "needs the WORKLOAD"},
		{"rate and speed", func(o *ReplayOptions) { o.Rate, o.Speed = "5/s", "2x" }, "exclude"},
		{"bad rate", func(o *ReplayOptions) { o.Rate = "fast" }, "--rate"},
		{"bad speed", func(o *ReplayOptions) { o.Speed = "-1x" }, "--speed"},
		{"zero count", func(o *ReplayOptions) { o.Count = 0 }, "at least 1"},
		{"bad header", func(o *ReplayOptions) { o.Headers = []string{"NoColon"} }, "Name: value"},
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
