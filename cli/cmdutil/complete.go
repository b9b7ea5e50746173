package cmdutil

import (
	"context"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"

	"github.com/tetherkube/tether/daemon"
	"github.com/tetherkube/tether/recording"
)

// Shell completion (`tether completion bash|zsh|fish|powershell`, and
// `kubectl tether` through kubectl_complete-tether): names come from the
// cluster the kubectl flags on the line point at, and recorded exchanges
// from a running daemon (completion never starts one). Each lookup is
// bounded by completeTimeout; on any error it offers nothing, so a
// broken kube context never breaks the shell.

const completeTimeout = 3 * time.Second

// completeClient is the clientset (each call bounded by completeTimeout)
// and namespace of the command line.
func (f *Factory) completeClient() (kubernetes.Interface, string, bool) {
	cs, err := f.kubeClient(completeTimeout)
	if err != nil {
		return nil, "", false
	}
	ns, _, err := f.KubeConfig.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return nil, "", false
	}
	return cs, ns, true
}

// noFiles ends every answer: tether's names are never file names.
const noFiles = cobra.ShellCompDirectiveNoFileComp

// CompleteWorkload completes the first argument with the namespace's
// Deployments and StatefulSets (NAME, or KIND/NAME once a kind is typed,
// or when a name is both); withPods adds pod/NAME (env and run take it).
func (f *Factory) CompleteWorkload(withPods bool) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, noFiles
		}
		cs, ns, ok := f.completeClient()
		if !ok {
			return nil, noFiles
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), completeTimeout)
		defer cancel()
		return workloadNames(ctx, cs, ns, withPods, toComplete), noFiles
	}
}

func workloadNames(ctx context.Context, cs kubernetes.Interface, ns string, withPods bool, toComplete string) []cobra.Completion {
	kinds := map[string][]string{} // name -> kinds
	if ds, err := cs.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, d := range ds.Items {
			kinds[d.Name] = append(kinds[d.Name], "deploy")
		}
	}
	if ss, err := cs.AppsV1().StatefulSets(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, s := range ss.Items {
			kinds[s.Name] = append(kinds[s.Name], "sts")
		}
	}
	var out []cobra.Completion
	typedKind := strings.Contains(toComplete, "/")
	for name, ks := range kinds {
		for _, k := range ks {
			desc := map[string]string{"deploy": "deployment", "sts": "statefulset"}[k]
			if typedKind || len(ks) > 1 {
				out = append(out, cobra.CompletionWithDesc(k+"/"+name, desc))
			} else {
				out = append(out, cobra.CompletionWithDesc(name, desc))
			}
		}
	}
	if withPods && (typedKind || toComplete == "" || strings.HasPrefix("pod/", toComplete)) {
		for _, p := range podNames(ctx, cs, ns) {
			out = append(out, "pod/"+p)
		}
	}
	sort.Strings(out)
	return out
}

func podNames(ctx context.Context, cs kubernetes.Interface, ns string) []string {
	ps, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil
	}
	var out []string
	for _, p := range ps.Items {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
			out = append(out, p.Name)
		}
	}
	return out
}

// CompletePod completes the first argument with the namespace's running
// pods.
func (f *Factory) CompletePod() cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, noFiles
		}
		cs, ns, ok := f.completeClient()
		if !ok {
			return nil, noFiles
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), completeTimeout)
		defer cancel()
		return podNames(ctx, cs, ns), noFiles
	}
}

// CompleteServicePort completes --port with the ports of the Services that
// send to the workload named by the first argument: the port's name when
// it has one, else its number.
func (f *Factory) CompleteServicePort() cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) == 0 {
			return nil, noFiles
		}
		cs, ns, ok := f.completeClient()
		if !ok {
			return nil, noFiles
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), completeTimeout)
		defer cancel()
		return servicePorts(ctx, cs, ns, args[0]), noFiles
	}
}

func servicePorts(ctx context.Context, cs kubernetes.Interface, ns, ref string) []cobra.Completion {
	kind, name, found := strings.Cut(ref, "/")
	if !found {
		kind, name = "", ref
	}
	var podLabels map[string]string
	switch kind {
	case "", "deploy", "deployment", "deployments":
		if d, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{}); err == nil {
			podLabels = d.Spec.Template.Labels
			break
		}
		if kind != "" {
			return nil
		}
		fallthrough
	case "sts", "statefulset", "statefulsets":
		s, err := cs.AppsV1().StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil
		}
		podLabels = s.Spec.Template.Labels
	default:
		return nil
	}
	svcs, err := cs.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	var out []cobra.Completion
	for _, s := range svcs.Items {
		if len(s.Spec.Selector) == 0 || !labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(podLabels)) {
			continue
		}
		for _, p := range s.Spec.Ports {
			v := p.Name
			if v == "" {
				v = strconv.Itoa(int(p.Port))
			}
			if !seen[v] {
				seen[v] = true
				out = append(out, cobra.CompletionWithDesc(v, "service/"+s.Name+" port "+strconv.Itoa(int(p.Port))+"/"+strings.ToLower(string(p.Protocol))))
			}
		}
	}
	sort.Strings(out)
	return out
}

// CompleteRecorded completes the arguments after WORKLOAD with the names
// of the exchanges its agents hold (newest 200), read through a running
// daemon; with none running it offers nothing.
func (f *Factory) CompleteRecorded() cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) == 0 {
			return f.CompleteWorkload(false)(cmd, args, "")
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), completeTimeout)
		defer cancel()
		client, done, err := f.Daemon(ctx, false)
		if err != nil {
			return nil, noFiles
		}
		defer done()
		t, err := f.Target()
		if err != nil {
			return nil, noFiles
		}
		var out []cobra.Completion
		_, _ = client.Requests(ctx, daemon.RequestsRequest{Namespace: t.Namespace, Workload: args[0], WithoutBodies: true, Limit: 200},
			func(e *recording.Exchange) error {
				out = append(out, cobra.CompletionWithDesc(ExchangeRef(e), e.Request.Method+" "+recording.Printable(e.Request.Target)))
				return nil
			})
		return out, noFiles | cobra.ShellCompDirectiveKeepOrder
	}
}

// ExchangeRef names an exchange across a workload's pods: the end of the
// pod's name and the agent's sequence number ("x2x.17").
func ExchangeRef(e *recording.Exchange) string {
	return PodSuffix(e.Pod) + "." + strconv.FormatUint(e.ID, 10)
}

// PodSuffix is the end of a pod's name, after its last dash.
func PodSuffix(pod string) string {
	if i := strings.LastIndexByte(pod, '-'); i >= 0 {
		return pod[i+1:]
	}
	return pod
}
