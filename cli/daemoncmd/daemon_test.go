package daemoncmd

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/rest"

	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/cli/cmdutil/cmdtest"
)

func TestNewCmdRun(t *testing.T) {
	streams, _, _ := cmdtest.Streams()
	var got *RunOptions
	cmd := NewCmdRun(cmdtest.Factory(t, streams), func(_ context.Context, o *RunOptions) error { got = o; return nil })
	if err := cmdtest.Exec(cmd); err != nil {
		t.Fatal(err)
	}
	dir := os.Getenv("XDG_RUNTIME_DIR")
	if got.Kube.Context != "test" || got.Kube.Server != "https://127.0.0.1:1" || !strings.HasPrefix(got.Kube.Paths.Socket, dir) || got.Log != streams.ErrOut {
		t.Errorf("resolved %+v", got.Kube)
	}
	err := cmdtest.Exec(cmd, "now")
	cmdtest.WantError(t, err, cmdutil.ExitUser, `unknown command "now"`)
}

func TestRunStopsOnBadConfig(t *testing.T) {
	_, _, errOut := cmdtest.Streams()
	var kube cmdutil.Target
	kube.Context = "test"
	kube.Paths.Dir = filepath.Join(t.TempDir(), "tether")
	o := &RunOptions{Log: errOut, Kube: kube, RESTConfig: func() (*rest.Config, error) { return nil, errors.New("no server in kubeconfig") }}
	err := o.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "no server in kubeconfig") {
		t.Errorf("Run = %v", err)
	}
	if st, err := os.Stat(kube.Paths.Dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("the daemon's folder: %v %v", st, err)
	}
}
