package cluster

import (
	"context"
	"fmt"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Status is what Check saw of the cluster.
type Status struct {
	PID           int    `json:"pid,omitempty"`
	Running       bool   `json:"running"`
	APIServer     bool   `json:"apiServer"`
	ServerVersion string `json:"serverVersion,omitempty"`
	NodeReady     bool   `json:"nodeReady"`
	CoreDNSReady  bool   `json:"coreDNSReady"`
	// DefaultServiceAccount is true once pods can be created in "default".
	DefaultServiceAccount bool `json:"defaultServiceAccount"`
	// Node2 is true when node 2 was started (and not stopped by Down);
	// Node2Problem then says what is wrong with it, "" when it is Ready.
	Node2        bool   `json:"node2"`
	Node2Problem string `json:"node2Problem,omitempty"`
	Kubeconfig   string `json:"kubeconfig"`
	Problem      string `json:"problem,omitempty"`
}

// Healthy reports whether tests can use the cluster.
func (s Status) Healthy() bool {
	return s.Running && s.APIServer && s.NodeReady && s.CoreDNSReady && s.DefaultServiceAccount && (!s.Node2 || s.Node2Problem == "")
}

// Waiting names the first thing that is not ready yet.
func (s Status) Waiting() string {
	switch {
	case !s.Running:
		return "k3s to run"
	case !s.APIServer:
		return "the API server"
	case !s.NodeReady:
		return "node Ready"
	case !s.CoreDNSReady:
		return "CoreDNS Ready"
	case !s.DefaultServiceAccount:
		return "the default ServiceAccount"
	case s.Node2 && s.Node2Problem != "":
		return "node 2 (" + s.Node2Problem + ")"
	default:
		return "nothing"
	}
}

// Check looks at the cluster once, without waiting.
func Check(ctx context.Context, cfg Config) Status {
	return check(ctx, cfg, time.Time{}, time.Time{})
}

// check is Check that counts the node as Ready only when its kubelet said
// so after nodeSince, and CoreDNS only when it became Ready after dnsSince:
// a restarted cluster's store still holds the Ready conditions its
// previous run wrote. (A restart that kept the pods running, Restart,
// passes no dnsSince: CoreDNS never stopped.)
func check(ctx context.Context, cfg Config, nodeSince, dnsSince time.Time) Status {
	nodeSince = nodeSince.Truncate(time.Second) // the API keeps whole seconds
	dnsSince = dnsSince.Truncate(time.Second)
	st := Status{PID: readPID(cfg.pidFile()), Kubeconfig: cfg.KubeconfigPath()}
	st.Running = processAlive(st.PID, cfg.k3sBin())
	if !st.Running {
		st.Problem = "k3s is not running"
		return st
	}
	if _, err := os.Stat(cfg.KubeconfigPath()); err != nil {
		st.Problem = "no kubeconfig yet"
		return st
	}
	cs, err := Clientset(cfg)
	if err != nil {
		st.Problem = err.Error()
		return st
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		st.Problem = fmt.Sprintf("API server: %v", err)
		return st
	}
	st.APIServer, st.ServerVersion = true, v.GitVersion

	node, err := cs.CoreV1().Nodes().Get(ctx, cfg.NodeName, metav1.GetOptions{})
	if err != nil {
		st.Problem = fmt.Sprintf("node %s: %v", cfg.NodeName, err)
		return st
	}
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue && !c.LastHeartbeatTime.Time.Before(nodeSince) {
			st.NodeReady = true
		}
	}
	if !st.NodeReady {
		st.Problem = "node not Ready"
		return st
	}
	pods, err := cs.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: "k8s-app=kube-dns"})
	if err == nil {
		for _, p := range pods.Items {
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue && !c.LastTransitionTime.Time.Before(dnsSince) {
					st.CoreDNSReady = true
				}
			}
		}
	}
	if !st.CoreDNSReady {
		st.Problem = "CoreDNS not Ready"
		return st
	}
	if _, err := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{}); err == nil {
		st.DefaultServiceAccount = true
	} else {
		st.Problem = "default ServiceAccount missing"
		return st
	}
	// Node 2 counts from its pid file: Down removes it, a crash does not.
	if st.Node2 = readPID(cfg.node2PIDFile()) != 0; st.Node2 {
		if st.Node2Problem = checkNode2(ctx, cfg, nodeSince); st.Node2Problem != "" {
			st.Problem = "node 2: " + st.Node2Problem
		}
	}
	return st
}

// Clientset returns a client for the cluster, from its admin kubeconfig.
func Clientset(cfg Config) (*kubernetes.Clientset, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", cfg.KubeconfigPath())
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %s: %w", cfg.KubeconfigPath(), err)
	}
	rc.Timeout = 5 * time.Second
	return kubernetes.NewForConfig(rc)
}
