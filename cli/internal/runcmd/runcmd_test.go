package runcmd

import (
	"bytes"
	"context"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tetherkube/tether/internal/errdefs"
)

func TestParseForward(t *testing.T) {
	tests := []struct {
		in      string
		want    Forward
		wantErr string
	}{
		{in: "svc/db:5432", want: Forward{"db", "5432", 5432}},
		{in: "service/db:5432:15432", want: Forward{"db", "5432", 15432}},
		{in: "svc/db:postgres:15432", want: Forward{"db", "postgres", 15432}},
		{in: "svc/db:postgres", wantErr: "is a name: give LOCALPORT too"},
		{in: "svc/db:Bad_Name:1", wantErr: "nor a port name"},
		{in: "db:5432", wantErr: "only Services"},
		{in: "svc/db", wantErr: "want a Service name and a port"},
		{in: "svc/db.other:5432", wantErr: "without dots"},
		{in: "svc/db:0:1", wantErr: "not a port number"},
		{in: "svc/db:5432:70000", wantErr: "LOCALPORT"},
		{in: "svc/db:1:2:3", wantErr: "want a Service name and a port"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseForward(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

func TestMerge(t *testing.T) {
	got := Merge([]string{"A=1", "B=2"}, []string{"B=3", "C=4"}, []string{"C=5"})
	if diff := cmp.Diff([]string{"A=1", "B=3", "C=5"}, got); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
}

func TestAutoNetwork(t *testing.T) {
	runner := func(context.Context, *Session, Process) (int, error) { return 0, nil }
	cannot := func() error { return errdefs.User("no /dev/net/tun: sudo modprobe tun") }
	can := func() error { return nil }
	tests := []struct {
		name     string
		cfg      Config
		want     string
		wantNote bool
	}{
		{"the namespace mode where it can run", Config{InNamespace: runner, CheckNamespace: can}, NetworkNamespace, false},
		{"the proxy mode where it cannot, saying why", Config{InNamespace: runner, CheckNamespace: cannot}, NetworkProxy, runtime.GOOS == "linux"},
		{"quietly with -q", Config{InNamespace: runner, CheckNamespace: cannot, Quiet: true}, NetworkProxy, false},
		{"the proxy mode without a runner", Config{CheckNamespace: can}, NetworkProxy, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var errOut bytes.Buffer
			tt.cfg.ErrOut = &errOut
			if got := autoNetwork(tt.cfg); got != tt.want {
				t.Errorf("mode %q, want %q", got, tt.want)
			}
			if note := strings.Contains(errOut.String(), "using the proxy mode: no /dev/net/tun"); note != tt.wantNote {
				t.Errorf("note %q, want one: %v", errOut.String(), tt.wantNote)
			}
		})
	}
}
