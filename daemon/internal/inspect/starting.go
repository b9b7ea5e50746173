package inspect

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/tetherkube/tether/tunnel"
)

// DialEvery is how often UntilUp tries an agent that is starting. Every
// try is an API connection, and the API server, the kubelet and the
// runtime that answer it share the node's CPU with the kubelet starting
// the agent: 50 ms was not clearly quicker on the local cluster (2
// cores, loaded).
const DialEvery = 100 * time.Millisecond

// UntilUp calls try, then again every DialEvery while agent a starts:
// the kubelet reports a container running a second or more after it
// does, and can report it running before the agent listens (the
// port-forward then ends at once, "read handshake reply: EOF"). It
// returns how many tries it took, or fails: with the kubelet's reason
// once it reports the container stopped (read every second), and with
// the last try's error at once on a token the agent refused (another
// tether used the bootstrap token first) or after within: the caller
// explains those (Explain).
func UntilUp(ctx context.Context, cs kubernetes.Interface, namespace string, a Agent, within time.Duration,
	try func(ctx context.Context) error) (tries int, err error) {
	start, checked := time.Now(), time.Now()
	for tries = 1; ; tries++ {
		if err = try(ctx); err == nil {
			return tries, nil
		}
		if errors.Is(err, tunnel.ErrBadToken) {
			return tries, err
		}
		if time.Since(checked) >= time.Second {
			if ferr := Failed(ctx, cs, namespace, a); ferr != nil {
				return tries, ferr
			}
			checked = time.Now()
		}
		if time.Since(start) >= within {
			return tries, err
		}
		select {
		case <-ctx.Done():
			return tries, fmt.Errorf("agent %s of pod %s: %w (last: %v)", a.Container, a.Pod, ctx.Err(), err)
		case <-time.After(DialEvery):
		}
	}
}
