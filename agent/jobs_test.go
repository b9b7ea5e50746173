package agent

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseJobs(t *testing.T) {
	tests := []struct {
		in      string
		want    []Job
		wantErr bool
	}{
		{in: "probe", want: []Job{JobProbe}},
		{in: "capture", want: []Job{JobCapture}},
		{in: "intercept, probe,capture", want: []Job{JobIntercept, JobProbe, JobCapture}},
		{in: "", wantErr: true},
		{in: "dial", wantErr: true},
		{in: "probe,", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseJobs(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseJobs(%q) error = %v, want error: %v", tt.in, err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseJobs(%q) (-want +got):\n%s", tt.in, diff)
			}
			if err == nil && JoinJobs(got) == "" {
				t.Errorf("JoinJobs(%v) is empty", got)
			}
		})
	}
}
