package cluster

import (
	"bytes"
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
)

// Exec runs cmd in the pod's first container and returns its stdout and
// stderr, joined, and the error of the run (non-nil when the command failed).
func Exec(ctx context.Context, rc *rest.Config, namespace, pod string, cmd ...string) (string, error) {
	return ExecIn(ctx, rc, namespace, pod, "", cmd...)
}

// ExecIn is Exec in one of the pod's containers ("": its only one).
func ExecIn(ctx context.Context, rc *rest.Config, namespace, pod, container string, cmd ...string) (string, error) {
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return "", err
	}
	req := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(namespace).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: container, Command: cmd, Stdout: true, Stderr: true}, scheme.ParameterCodec)
	ex, err := remotecommand.NewSPDYExecutor(rc, "POST", req.URL())
	if err != nil {
		return "", err
	}
	// Separate buffers: the executor copies stdout and stderr concurrently.
	var stdout, stderr bytes.Buffer
	err = ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &stdout, Stderr: &stderr})
	return stdout.String() + stderr.String(), err
}
