package record

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/daemon"
)

func TestValidate(t *testing.T) {
	ok := func() Options {
		return Options{Workload: "orders", ServicePort: "http", BodyCap: "1Mi", Budget: "64Mi", RolloutTimeout: time.Minute}
	}
	tests := []struct {
		name string
		edit func(*Options)
		want string
	}{
		{"valid", func(*Options) {}, ""},
		{"no port", func(o *Options) { o.ServicePort = "" }, "--port is required"},
		{"redact and no-redact", func(o *Options) { o.Redact, o.NoRedact = []string{"x"}, true }, "contradict"},
		{"bad redact name", func(o *Options) { o.Redact = []string{"a b"} }, "--redact"},
		{"bad size", func(o *Options) { o.Budget = "lots" }, "--budget"},
		{"budget too small", func(o *Options) { o.Budget = "512Ki" }, "at least 1Mi"},
		{"cap over half", func(o *Options) { o.Budget, o.BodyCap = "2Mi", "2Mi" }, "at most half"},
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
				t.Errorf("got %v, want a user error containing %q", err, tt.want)
			}
		})
	}
}

func TestRecordArgs(t *testing.T) {
	got := daemon.RecordRequest{Redact: []string{"password", "x-api-key"}, BodyCap: 4096, Budget: 8 << 20}.RecordArgs()
	want := []string{"--redact", "password,x-api-key", "--record-body-cap", "4096", "--record-budget", "8388608"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
}
