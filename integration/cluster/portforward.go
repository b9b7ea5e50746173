package cluster

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"

	tpf "github.com/tetherkube/tether/internal/portforward"
)

// ForwardPort forwards a loopback port to port of the pod, with client-go's
// port-forward (WebSocket, falling back to SPDY), the path kubectl
// port-forward takes. It returns the local address and a function that stops
// the forward.
func ForwardPort(ctx context.Context, rc *rest.Config, namespace, pod string, port int) (string, func(), error) {
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return "", nil, err
	}
	dialer, err := tpf.StreamDialer(rc, cs, namespace, pod)
	if err != nil {
		return "", nil, err
	}

	stopCh, readyCh := make(chan struct{}), make(chan struct{})
	pf, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{"0:" + strconv.Itoa(port)}, stopCh, readyCh, io.Discard, io.Discard)
	if err != nil {
		return "", nil, err
	}
	errCh := make(chan error, 1)
	go func() { errCh <- pf.ForwardPorts() }()
	select {
	case <-readyCh:
	case err := <-errCh:
		return "", nil, fmt.Errorf("port-forward to %s/%s:%d: %w", namespace, pod, port, err)
	case <-ctx.Done():
		close(stopCh)
		return "", nil, ctx.Err()
	}
	ports, err := pf.GetPorts()
	if err != nil || len(ports) != 1 {
		close(stopCh)
		return "", nil, fmt.Errorf("port-forward to %s/%s:%d: no local port: %v", namespace, pod, port, err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			close(stopCh)
		}
	}
	return fmt.Sprintf("127.0.0.1:%d", ports[0].Local), stop, nil
}
