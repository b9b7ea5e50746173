package intercept

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/tetherkube/tether/agent"
	agentserver "github.com/tetherkube/tether/agent/server"
	"github.com/tetherkube/tether/daemon/internal/inspect"
)

// podAgents is a Dialer whose pods' ephemeral agents run in this process:
// the first dial of a pod's agent starts one with the bootstrap token of
// its spec; a pod in hold answers only once its channel is closed.
type podAgents struct {
	t    *testing.T
	cs   *fake.Clientset
	hold map[string]chan struct{}

	mu     sync.Mutex
	addrs  map[string]string
	events []string // "dial POD" when an agent first answers
}

func (d *podAgents) DialPod(ctx context.Context, namespace, pod string, port int) (net.Conn, error) {
	if h := d.hold[pod]; h != nil {
		select {
		case <-h:
		default:
			return nil, errors.New("connection refused: the agent is starting")
		}
	}
	d.mu.Lock()
	addr, ok := d.addrs[pod]
	if !ok {
		p, err := d.cs.CoreV1().Pods(namespace).Get(ctx, pod, metav1.GetOptions{})
		if err != nil {
			d.mu.Unlock()
			return nil, err
		}
		var token string
		for _, c := range p.Spec.EphemeralContainers {
			for _, e := range c.Env {
				if e.Name == "TETHER_TOKEN" {
					token = e.Value
				}
			}
		}
		addr = d.start(token)
		d.addrs[pod] = addr
		d.events = append(d.events, "dial "+pod)
	}
	d.mu.Unlock()
	// Outside the lock, and bounded: a connection the kernel is slow to
	// take (it once hung for the SYN retries' 2 minutes on a loaded
	// machine) fails this dial, which the intercept retries, rather than
	// every other pod's.
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var dialer net.Dialer
	return dialer.DialContext(dctx, "tcp", addr)
}

// start runs an agent in front of a port nothing listens on, as the
// intercept job does (its listening port the plan's, 17000).
func (d *podAgents) start(token string) string {
	cfg := agentserver.DefaultConfig()
	cfg.Token, cfg.BootstrapTTL = []byte(token), inspect.BootstrapTTL
	cfg.Record.Off = true
	cfg.Forwards = []agent.Forward{{ListenPort: 17000, AppPort: 1}}
	a, err := agentserver.New(cfg)
	if err != nil {
		d.t.Fatal(err)
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		d.t.Fatal(err)
	}
	fl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		d.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.ServeListeners(ctx, tl, []net.Listener{fl}) }()
	d.t.Cleanup(func() { cancel(); <-done })
	return tl.Addr().String()
}

func (d *podAgents) note(e string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.events = append(d.events, e)
}

// startCluster is noRestartCluster with running pods whose agents the
// returned Dialer runs, and EndpointSlices that follow the Service and
// the marks, as the endpoints controller would.
func startCluster(t *testing.T, pods ...string) (*fake.Clientset, *podAgents) {
	var objs []runtime.Object
	for _, name := range pods {
		p := readyPod(name, nil)
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "orders", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
		objs = append(objs, p)
	}
	cs := noRestartCluster(false, objs...)
	d := &podAgents{t: t, cs: cs, hold: map[string]chan struct{}{}, addrs: map[string]string{}}
	cs.PrependReactor("update", "services", func(a k8stesting.Action) (bool, runtime.Object, error) {
		d.note("service " + fmt.Sprint(len(a.(k8stesting.UpdateAction).GetObject().(*corev1.Service).Spec.Selector)))
		return false, nil, nil
	})
	cs.PrependReactor("list", "endpointslices", func(k8stesting.Action) (bool, runtime.Object, error) {
		svc, err := cs.Tracker().Get(corev1.SchemeGroupVersion.WithResource("services"), ns, "orders")
		if err != nil {
			return true, nil, err
		}
		s := svc.(*corev1.Service)
		port := int32(8080)
		if tp := s.Spec.Ports[0].TargetPort; tp.IntValue() != 0 {
			port = int32(tp.IntValue())
		}
		slice := discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "orders-x",
			Labels: map[string]string{discoveryv1.LabelServiceName: "orders"}}, Ports: []discoveryv1.EndpointPort{{Name: &s.Spec.Ports[0].Name, Port: &port}}}
		list, err := cs.Tracker().List(corev1.SchemeGroupVersion.WithResource("pods"), corev1.SchemeGroupVersion.WithKind("Pod"), ns)
		if err != nil {
			return true, nil, err
		}
		yes := true
	pods:
		for _, p := range list.(*corev1.PodList).Items {
			for k, v := range s.Spec.Selector {
				if p.Labels[k] != v {
					continue pods
				}
			}
			slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{Conditions: discoveryv1.EndpointConditions{Ready: &yes},
				TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: p.Name}})
		}
		return true, &discoveryv1.EndpointSliceList{Items: []discoveryv1.EndpointSlice{slice}}, nil
	})
	return cs, d
}

// TestStartNoRestartFirstPods: the Service is pointed at the first pod
// whose agent answers while the others' agents still start; the start
// returns once that pod carries the traffic, and the others are marked
// in the background as their agents answer. A recording waits for every
// agent, and returns with every pod marked.
func TestStartNoRestartFirstPods(t *testing.T) {
	for _, tc := range []struct {
		name       string
		recordOnly bool
		// want: whether the Service changed before the late agents answered
		serviceFirst bool
	}{
		{name: "intercept", serviceFirst: true},
		{name: "record", recordOnly: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs, d := startCluster(t, "orders-1", "orders-2", "orders-3")
			late := make(chan struct{})
			d.hold["orders-2"], d.hold["orders-3"] = late, late
			req := noRestartRequest
			req.RecordOnly = tc.recordOnly
			// The late agents answer once the Service changed, or after a
			// while when it waits for them.
			go func() {
				deadline := time.After(time.Second)
				for {
					d.mu.Lock()
					changed := false
					for _, e := range d.events {
						changed = changed || e == "service 2"
					}
					d.mu.Unlock()
					select {
					case <-deadline:
						changed = true
					case <-time.After(10 * time.Millisecond):
					}
					if changed {
						close(late)
						return
					}
				}
			}()
			ic, err := (&Manager{CS: cs, Dialer: d}).Start(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			defer ic.follower.stop()
			d.mu.Lock()
			events := append([]string(nil), d.events...)
			d.mu.Unlock()
			service := -1
			for i, e := range events {
				if e == "service 2" {
					service = i
				}
			}
			if service < 0 {
				t.Fatalf("the Service was not retargeted: %v", events)
			}
			before := service == 1 // only orders-1 answered before it
			if before != tc.serviceFirst {
				t.Errorf("events %v: Service changed before the late agents answered = %v, want %v", events, before, tc.serviceFirst)
			}
			if l := podLabels(t, cs)["orders-1"]; l[MarkLabel] != noRestartRequest.ID {
				t.Errorf("pod orders-1 not marked when the start returned: %v", l)
			}
			// Marked in the background once their agents answered (when
			// the start returned, for a recording).
			wait := 5 * time.Second
			if tc.recordOnly {
				wait = 0
			}
			for deadline := time.Now().Add(wait); ; time.Sleep(10 * time.Millisecond) {
				unmarked := map[string]map[string]string{}
				for name, l := range podLabels(t, cs) {
					if l[MarkLabel] != noRestartRequest.ID {
						unmarked[name] = l
					}
				}
				if len(unmarked) == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("pods not marked %s after the start returned: %v", wait, unmarked)
				}
			}
		})
	}
}

// TestStartNoRestartStopWhileJoining: an intercept stopped while the
// start's last agents still start (its joins in the background) stops
// them: stop returns, and only the first pod has a tunnel and a mark.
func TestStartNoRestartStopWhileJoining(t *testing.T) {
	cs, d := startCluster(t, "orders-1", "orders-2")
	d.hold["orders-2"] = make(chan struct{}) // never answers
	ic, err := (&Manager{CS: cs, Dialer: d}).Start(context.Background(), noRestartRequest)
	if err != nil {
		t.Fatal(err)
	}
	stopped := make(chan struct{})
	go func() { ic.follower.stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("stop did not return while a pod's agent was still starting")
	}
	ic.tunnels.mu.Lock()
	links := slices.Sorted(maps.Keys(ic.tunnels.links))
	ic.tunnels.mu.Unlock()
	if fmt.Sprint(links) != "[orders-1]" {
		t.Errorf("tunnels to %v after stop, want [orders-1]", links)
	}
	if l := podLabels(t, cs)["orders-2"]; l[MarkLabel] != "" {
		t.Errorf("pod orders-2 marked: %v", l)
	}
}
