package doctor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	authv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/version"
	fakediscovery "k8s.io/client-go/discovery/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/tetherkube/tether/agent"
	agentserver "github.com/tetherkube/tether/agent/server"
	"github.com/tetherkube/tether/cli/cmdutil"
	"github.com/tetherkube/tether/cli/cmdutil/cmdtest"
	"github.com/tetherkube/tether/internal/agentspec"
)

// cluster is a fake cluster: a fake clientset whose access reviews,
// discovery and pods behave as a test sets, and real agents for the test
// pods it "starts", reached through a fake port-forward.
type cluster struct {
	t  *testing.T
	cs *fake.Clientset
	// denied rules, as access.Rule.String() spells them.
	denied map[string]bool
	// waiting is the reason the test pods' container waits with; ""
	// runs them (a real agent, with the pod's token or agentToken).
	waiting    string
	agentToken string
	dialErr    error

	mu     sync.Mutex
	agents map[string]string // pod -> agent's tunnel address
	status map[string]corev1.PodStatus
	// refuse, when set, is an admission policy beyond the labels.
	refuse func(*corev1.Pod) error
}

func newCluster(t *testing.T, objects ...runtime.Object) *cluster {
	c := &cluster{t: t, cs: fake.NewClientset(objects...), denied: map[string]bool{}, agents: map[string]string{}, status: map[string]corev1.PodStatus{}}
	disc := c.cs.Discovery().(*fakediscovery.FakeDiscovery)
	disc.FakedServerVersion = &version.Info{Major: "1", Minor: "32", GitVersion: "v1.32.0+k3s1"}
	disc.Resources = []*metav1.APIResourceList{{GroupVersion: "v1", APIResources: []metav1.APIResource{{Name: "pods"}, {Name: "pods/ephemeralcontainers"}}}}
	c.cs.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		r := a.(k8stesting.CreateAction).GetObject().(*authv1.SelfSubjectAccessReview)
		ra := r.Spec.ResourceAttributes
		res := ra.Resource
		if ra.Subresource != "" {
			res += "/" + ra.Subresource
		}
		if ra.Group != "" {
			res += "." + ra.Group
		}
		r.Status.Allowed = !c.denied[ra.Verb+" "+res]
		return true, r, nil
	})
	c.cs.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		p := a.(k8stesting.CreateAction).GetObject().(*corev1.Pod)
		if len(a.(k8stesting.CreateActionImpl).CreateOptions.DryRun) > 0 {
			return true, p, c.admit(p) // stores nothing
		}
		p.Spec.NodeName = "node-1"
		p.CreationTimestamp = metav1.Now() // as the API server sets it
		st := corev1.ContainerStatus{Name: agentspec.Container}
		if c.waiting != "" {
			p.Status.Phase = corev1.PodPending
			st.State.Waiting = &corev1.ContainerStateWaiting{Reason: c.waiting, Message: "failed to pull image"}
		} else {
			p.Status.Phase = corev1.PodRunning
			st.State.Running = &corev1.ContainerStateRunning{}
			token := c.agentToken
			if token == "" {
				token = p.Spec.Containers[0].Env[0].Value
			}
			c.startAgent(p.Name, token)
		}
		p.Status.ContainerStatuses = []corev1.ContainerStatus{st}
		c.mu.Lock()
		c.status[p.Name] = p.Status
		c.mu.Unlock()
		return false, nil, nil // the tracker stores it
	})
	// The tracker keeps no status on create (a subresource): get adds it.
	c.cs.PrependReactor("get", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		ga := a.(k8stesting.GetAction)
		obj, err := c.cs.Tracker().Get(corev1.SchemeGroupVersion.WithResource("pods"), ga.GetNamespace(), ga.GetName())
		if err != nil {
			return true, nil, err
		}
		p := obj.(*corev1.Pod).DeepCopy()
		c.mu.Lock()
		if st, ok := c.status[p.Name]; ok {
			p.Status = st
		}
		c.mu.Unlock()
		return true, p, nil
	})
	return c
}

// admit is the API server's admission of a dry run: RBAC, then Pod
// Security as the namespace's enforce label says (levelNeeded stands in
// for the real evaluator), then refuse when the test sets it.
func (c *cluster) admit(p *corev1.Pod) error {
	if c.denied["create pods"] {
		return apierrors.NewForbidden(corev1.Resource("pods"), "", errors.New(`User "dev" cannot create resource "pods" in API group "" in the namespace "shop"`))
	}
	if c.refuse != nil {
		if err := c.refuse(p); err != nil {
			return err
		}
	}
	ns, err := c.cs.Tracker().Get(corev1.SchemeGroupVersion.WithResource("namespaces"), "", "shop")
	if err != nil {
		return nil
	}
	enforce := ns.(*corev1.Namespace).Labels["pod-security.kubernetes.io/enforce"]
	if need, why := levelNeeded(p.Spec.Containers[0].SecurityContext); levelRank(enforce) > levelRank(need) {
		return apierrors.NewForbidden(corev1.Resource("pods"), p.Name, fmt.Errorf("violates PodSecurity %q: %s", enforce+":latest", strings.Join(why, ", ")))
	}
	return nil
}

// startAgent runs a real agent serving probes with token, as the test pod
// would.
func (c *cluster) startAgent(pod, token string) {
	cfg := agentserver.DefaultConfig()
	cfg.TunnelAddr, cfg.Token, cfg.Jobs, cfg.Record.Off = "127.0.0.1:0", []byte(token), []agent.Job{agent.JobProbe}, true
	a, err := agentserver.New(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.t.Cleanup(cancel)
	go a.ServeListeners(ctx, l, nil)
	c.mu.Lock()
	c.agents[pod] = l.Addr().String()
	c.mu.Unlock()
}

// dialPod is the fake port-forward: a TCP connection to the pod's agent.
func (c *cluster) dialPod(ctx context.Context, namespace, pod string, port int) (net.Conn, error) {
	if c.dialErr != nil {
		return nil, c.dialErr
	}
	if port != agent.DefaultTunnelPort {
		return nil, errors.New("nothing listens there")
	}
	c.mu.Lock()
	addr, ok := c.agents[pod]
	c.mu.Unlock()
	if !ok {
		return nil, errors.New("pod not found")
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

func namespace(labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: labels}}
}

// options are a doctor's options against c in namespace shop on Linux.
func (c *cluster) options() (*DoctorOptions, *strings.Builder) {
	streams, _, _ := cmdtest.Streams()
	out := &strings.Builder{}
	streams.Out = out
	return &DoctorOptions{
		IOStreams: streams, Output: "json", AgentImage: "docker.io/tetherkube/tether-agent:dev",
		ImageTimeout: 5 * time.Second, CheckTimeout: 5 * time.Second,
		Kube:   cmdutil.Target{Context: "test", Server: "https://127.0.0.1:1", Namespace: "shop"},
		client: c.cs, DialPod: c.dialPod, RunningDaemon: cmdtest.NoDaemon,
		GOOS: "linux", HostCheck: func() error { return nil }, Now: time.Now,
	}, out
}

// run runs o and returns its results by check, with Run's error.
func run(t *testing.T, o *DoctorOptions, out *strings.Builder) (map[string]Result, error) {
	t.Helper()
	err := o.Run(context.Background())
	var list []Result
	if jerr := json.Unmarshal([]byte(out.String()), &list); jerr != nil {
		t.Fatalf("-o json does not parse: %v\n%s", jerr, out)
	}
	byName := map[string]Result{}
	for _, r := range list {
		byName[r.Check] = r
	}
	return byName, err
}

func want(t *testing.T, got map[string]Result, check string, status Status, says ...string) {
	t.Helper()
	r, ok := got[check]
	if !ok {
		t.Errorf("no check %q in %v", check, got)
		return
	}
	if r.Status != status {
		t.Errorf("%s: status %s, want %s (%s; fix %s)", check, r.Status, status, r.Detail, r.Fix)
	}
	for _, s := range says {
		if !strings.Contains(r.Detail+" FIX "+r.Fix, s) {
			t.Errorf("%s: %q (fix %q) does not say %q", check, r.Detail, r.Fix, s)
		}
	}
}

func (c *cluster) wantNoTestPod(t *testing.T) {
	t.Helper()
	pods, err := c.cs.CoreV1().Pods("shop").List(context.Background(), metav1.ListOptions{LabelSelector: agentspec.LabelDoctor})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 0 {
		t.Errorf("test pods left: %v", pods.Items)
	}
}
