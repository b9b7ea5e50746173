package replay

import (
	"strings"
	"testing"

	"github.com/tetherkube/tether/cli/cmdutil"
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
