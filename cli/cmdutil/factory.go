package cmdutil

import (
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
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
