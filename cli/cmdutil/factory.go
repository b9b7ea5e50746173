package cmdutil

import (
	"time"

	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"

	"github.com/tetherkube/tether/internal/errdefs"
)

// Factory hands commands their dependencies. Tests build one with their own
// streams and a kubeconfig pointing wherever the test needs.
type Factory struct {
	IOStreams genericiooptions.IOStreams
	// KubeConfig resolves --kubeconfig, --context, -n and the other kubectl
	// flags into REST clients, exactly as kubectl does.
	KubeConfig genericclioptions.RESTClientGetter
	// Flags are the kubectl flags themselves, to hand on to the daemon.
	Flags *genericclioptions.ConfigFlags
}

// KubeClient is a clientset for the cluster the kubectl flags point at,
// for commands that read the cluster themselves (most ask the daemon).
func (f *Factory) KubeClient() (kubernetes.Interface, error) { return f.kubeClient(0) }

// kubeClient is KubeClient with each request bounded by timeout (0: none).
func (f *Factory) kubeClient(timeout time.Duration) (kubernetes.Interface, error) {
	rc, err := f.KubeConfig.ToRESTConfig()
	if err != nil {
		return nil, errdefs.User("no usable kube context (%v): set KUBECONFIG or pass --kubeconfig/--context", err)
	}
	rc.Timeout = timeout
	return kubernetes.NewForConfig(rc)
}
