package runcmd

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
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
