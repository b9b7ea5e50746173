package version

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/cli/cmdutil/cmdtest"
)

func TestNewCmdVersion(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    VersionOptions
		wantErr string
	}{
		{name: "defaults", args: nil, want: VersionOptions{Timeout: 5 * time.Second}},
		{name: "client json", args: []string{"--client", "-o", "json"}, want: VersionOptions{ClientOnly: true, Output: "json", Timeout: 5 * time.Second}},
		{name: "timeout", args: []string{"--timeout", "2s"}, want: VersionOptions{Timeout: 2 * time.Second}},
		{name: "bad output", args: []string{"-o", "xml"}, wantErr: `unknown output format "xml"`},
		{name: "bad timeout", args: []string{"--timeout", "0s"}, wantErr: "--timeout must be positive"},
		{name: "extra arg", args: []string{"now"}, wantErr: `unknown command "now"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			streams, _, _, _ := genericiooptions.NewTestIOStreams()
			var got *VersionOptions
			cmd := NewCmdVersion(&cmdutil.Factory{IOStreams: streams}, func(_ context.Context, o *VersionOptions) error {
				got = o
				return nil
			})
			cmd.SetArgs(tt.args)
			cmd.SetOut(&bytes.Buffer{})
			cmd.SetErr(&bytes.Buffer{})
			err := cmd.Execute()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			gotFlags := VersionOptions{ClientOnly: got.ClientOnly, Output: got.Output, Timeout: got.Timeout}
			if diff := cmp.Diff(tt.want, gotFlags); diff != "" {
				t.Errorf("options (-want +got):\n%s", diff)
			}
		})
	}
}

// apiServer serves /version like a Kubernetes API server.
func apiServer(t *testing.T, gitVersion string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/version" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(version.Info{GitVersion: gitVersion, Major: "1", Minor: "32"})
	}))
	t.Cleanup(srv.Close)
	return srv
}

func optionsFor(t *testing.T, host string) (*VersionOptions, *bytes.Buffer, *bytes.Buffer) {
	streams, _, out, errOut := genericiooptions.NewTestIOStreams()
	return &VersionOptions{
		IOStreams: streams,
		Timeout:   2 * time.Second,
		Discovery: func() (discovery.DiscoveryInterface, error) {
			return discovery.NewDiscoveryClientForConfig(&rest.Config{Host: host})
		},
		Host: func() (string, error) { return host, nil },
	}, out, errOut
}

func TestRunReportsServer(t *testing.T) {
	srv := apiServer(t, "v1.32.0+k3s1")
	o, out, _ := optionsFor(t, srv.URL)
	o.Output = "json"
	if err := o.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	var got Versions
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	if got.Server == nil || got.Server.GitVersion != "v1.32.0+k3s1" {
		t.Errorf("server = %+v, want v1.32.0+k3s1", got.Server)
	}
	if got.ServerHost != srv.URL || got.ServerError != "" {
		t.Errorf("host %q error %q", got.ServerHost, got.ServerError)
	}
}

func TestRunUnreachableServerIsNotAnError(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close() // nothing listens there now
	o, out, errOut := optionsFor(t, srv.URL)
	if err := o.Run(context.Background()); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if !strings.Contains(out.String(), "Client: tether ") || !strings.Contains(out.String(), "Server: not reachable") {
		t.Errorf("output:\n%s", out)
	}
	if !strings.Contains(errOut.String(), "--client") {
		t.Errorf("stderr has no hint:\n%s", errOut)
	}
}

func TestRunClientOnlyDoesNotCallServer(t *testing.T) {
	o, out, _ := optionsFor(t, "http://127.0.0.1:1")
	o.ClientOnly = true
	o.Discovery = func() (discovery.DiscoveryInterface, error) {
		t.Fatal("--client contacted the cluster")
		return nil, nil
	}
	if err := o.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "Server:") {
		t.Errorf("output has a server line:\n%s", out)
	}
}

func TestVersionValidate(t *testing.T) {
	tests := []struct {
		name string
		o    VersionOptions
		want string
	}{
		{"valid", VersionOptions{Timeout: time.Second, Output: "yaml"}, ""},
		{"zero timeout", VersionOptions{}, "--timeout must be positive, got 0s"},
		{"negative timeout", VersionOptions{Timeout: -time.Second}, "--timeout must be positive, got -1s"},
		{"bad output", VersionOptions{Timeout: time.Second, Output: "xml"}, `unknown output format "xml": use -o json or -o yaml`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.o.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			cmdtest.WantError(t, err, cmdutil.ExitUser, tt.want)
		})
	}
}
