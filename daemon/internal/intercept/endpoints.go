package intercept

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// waitEndpoints waits until the Service routes only to pods whose agent is
// ready: every ready endpoint of its EndpointSlices is such a pod, and there
// are want of them. Until then some new connections would still reach pods
// without the agent (being replaced) and miss the intercept.
func waitEndpoints(ctx context.Context, cs kubernetes.Interface, ns, svc string, want int, timeout time.Duration, progress func(string)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start, last := time.Now(), time.Time{}
	for {
		agentReady, other, err := endpointPods(ctx, cs, ns, svc)
		if err != nil {
			return err
		}
		if other == 0 && agentReady >= want {
			return nil
		}
		if time.Since(last) >= time.Second {
			progress(fmt.Sprintf("waiting for service/%s to route to the agents (%d of %d ready, %d old endpoints), %s",
				svc, agentReady, want, other, time.Since(start).Round(time.Second)))
			last = time.Now()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("service/%s still routes to %d pods without the agent after %s", svc, other, timeout)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// endpointPods counts the Service's ready endpoints whose pod runs a ready
// agent, and the others.
func endpointPods(ctx context.Context, cs kubernetes.Interface, ns, svc string) (agentReady, other int, err error) {
	slices, err := cs.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil {
		return 0, 0, err
	}
	pods := map[string]*corev1.Pod{}
	for _, s := range slices.Items {
		for _, ep := range s.Endpoints {
			// kube-proxy sends new connections to terminating (serving but
			// not ready) endpoints only when no endpoint is ready: count
			// just the ready ones.
			if ep.Conditions.Ready == nil || !*ep.Conditions.Ready || ep.TargetRef == nil || ep.TargetRef.Kind != "Pod" {
				continue
			}
			p, ok := pods[ep.TargetRef.Name]
			if !ok {
				p, err = cs.CoreV1().Pods(ns).Get(ctx, ep.TargetRef.Name, metav1.GetOptions{})
				if err != nil {
					other++ // gone, or unreadable: not known to run the agent
					continue
				}
				pods[ep.TargetRef.Name] = p
			}
			if ready, _ := agentState(p); ready {
				agentReady++
			} else {
				other++
			}
		}
	}
	return agentReady, other, nil
}
