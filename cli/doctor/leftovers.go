package doctor

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tetherkube/tether/internal/agentspec"
)

// staleTestPod is how old a doctor's test pod must be to be another
// doctor's leftover rather than a running doctor's pod.
const staleTestPod = 2 * time.Minute

// checkLeftovers looks for what tether left in the namespace: journals no
// daemon here looks after, agents without a journal, test pods.
func (o *DoctorOptions) checkLeftovers(ctx context.Context) []Result {
	ctx, cancel := context.WithTimeout(ctx, o.CheckTimeout)
	defer cancel()
	ns := o.Kube.Namespace
	journals := Result{Check: "leftovers: journals"}
	agents := Result{Check: "leftovers: agents"}
	pods := o.leftoverPods(ctx)

	cms, err := o.client.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{LabelSelector: agentspec.LabelJournal})
	if err != nil {
		journals.Status, journals.Detail = StatusWarn, fmt.Sprintf("could not list tether's journals in namespace %s: %v", ns, err)
		agents.Status, agents.Detail = StatusSkipped, "it compares workloads with the journals, which could not be listed"
		return []Result{journals, agents, pods}
	}
	journaled := map[string]bool{} // kind/name
	var names []string
	for _, cm := range cms.Items {
		w := strings.ToLower(cm.Labels[agentspec.LabelWorkloadKind]) + "/" + cm.Labels[agentspec.LabelWorkloadName]
		journaled[w] = true
		names = append(names, w)
	}
	sort.Strings(names)
	switch {
	case len(names) == 0:
		journals.Status, journals.Detail = StatusOK, "no journal in namespace "+ns
	case o.daemonRuns(ctx):
		journals.Status, journals.Detail = StatusOK, fmt.Sprintf("%d journals (%s): a daemon runs for context %s (`tether status` lists its intercepts)", len(names), strings.Join(names, ", "), o.Kube.Context)
	default:
		journals.Status = StatusWarn
		journals.Detail = fmt.Sprintf("%d journals in namespace %s (%s) and no tether daemon runs for context %s: what they journal is still changed", len(names), ns, strings.Join(names, ", "), o.Kube.Context)
		journals.Fix = fmt.Sprintf("`tether rollback --all -n %s` restores them (or, if another machine's intercept is running, leave it)", ns)
	}
	agents = o.agentsWithoutJournal(ctx, journaled)
	return []Result{journals, agents, pods}
}

// daemonRuns says whether a daemon answers for this context.
func (o *DoctorOptions) daemonRuns(ctx context.Context) bool {
	svc, done, err := o.RunningDaemon(ctx)
	if err != nil {
		return false
	}
	defer done()
	_, err = svc.Status(ctx)
	return err == nil
}

// agentsWithoutJournal lists the Deployments and StatefulSets whose pod
// template runs tether's agent while no journal says how to restore them.
func (o *DoctorOptions) agentsWithoutJournal(ctx context.Context, journaled map[string]bool) Result {
	r := Result{Check: "leftovers: agents"}
	ns := o.Kube.Namespace
	type workload struct {
		kind, name string
		spec       corev1.PodTemplateSpec
	}
	var ws []workload
	deps, err := o.client.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
	if err == nil {
		for _, d := range deps.Items {
			ws = append(ws, workload{"deployment", d.Name, d.Spec.Template})
		}
		ss, serr := o.client.AppsV1().StatefulSets(ns).List(ctx, metav1.ListOptions{})
		err = serr
		if serr == nil {
			for _, s := range ss.Items {
				ws = append(ws, workload{"statefulset", s.Name, s.Spec.Template})
			}
		}
	}
	if err != nil {
		r.Status, r.Detail = StatusWarn, fmt.Sprintf("could not list the workloads of namespace %s: %v", ns, err)
		return r
	}
	var found, fixes []string
	for _, w := range ws {
		idx := -1
		for i, c := range w.spec.Spec.Containers {
			if c.Name == agentspec.Container {
				idx = i
			}
		}
		if idx < 0 || journaled[w.kind+"/"+w.name] {
			continue
		}
		found = append(found, w.kind+"/"+w.name)
		fixes = append(fixes, removeAgentFix(ns, w.kind, w.name, w.spec, idx))
	}
	if len(found) == 0 {
		r.Status, r.Detail = StatusOK, "no workload runs tether's agent without a journal"
		return r
	}
	r.Status = StatusWarn
	r.Detail = fmt.Sprintf("%s run tether's agent and have no journal to restore them from (tether rollback cannot)", strings.Join(found, ", "))
	r.Fix = strings.Join(fixes, "; ")
	return r
}

// removeAgentFix is the command that takes tether's agent out of a
// workload: the tether gateway is deleted (tether created it), any other
// workload loses the agent container, its token volume and the annotation.
func removeAgentFix(ns, kind, name string, t corev1.PodTemplateSpec, idx int) string {
	if t.Labels[agentspec.LabelGateway] != "" {
		return fmt.Sprintf("`kubectl -n %s delete %s %s` (tether's gateway)", ns, kind, name)
	}
	ops := []string{fmt.Sprintf(`{"op":"remove","path":"/spec/template/spec/containers/%d"}`, idx)}
	for i, v := range t.Spec.Volumes {
		if v.Name == agentspec.TokenVolume {
			ops = append(ops, fmt.Sprintf(`{"op":"remove","path":"/spec/template/spec/volumes/%d"}`, i))
		}
	}
	if _, ok := t.Annotations[agentspec.AgentAnnotation]; ok {
		ops = append(ops, `{"op":"remove","path":"/spec/template/metadata/annotations/`+strings.ReplaceAll(agentspec.AgentAnnotation, "/", "~1")+`"}`)
	}
	return fmt.Sprintf("`kubectl -n %s patch %s %s --type=json -p '[%s]'` (and point any Service whose targetPort is the agent's port back at the app)", ns, kind, name, strings.Join(ops, ","))
}

// leftoverPods deletes the test pods an interrupted doctor left.
func (o *DoctorOptions) leftoverPods(ctx context.Context) Result {
	r := Result{Check: "leftovers: test pods"}
	ns := o.Kube.Namespace
	list, err := o.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: agentspec.LabelDoctor})
	if err != nil {
		r.Status, r.Detail = StatusWarn, fmt.Sprintf("could not list doctor's test pods in namespace %s: %v", ns, err)
		r.Fix = fmt.Sprintf("`kubectl -n %s delete pod -l %s`", ns, agentspec.LabelDoctor)
		return r
	}
	var deleted, failed []string
	for _, p := range list.Items {
		if o.Now().Sub(p.CreationTimestamp.Time) < staleTestPod && p.Status.Phase != corev1.PodFailed && p.Status.Phase != corev1.PodSucceeded {
			continue // a running doctor's
		}
		zero := int64(0)
		if err := o.client.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
			failed = append(failed, p.Name)
		} else {
			deleted = append(deleted, p.Name)
		}
	}
	switch {
	case len(failed) > 0:
		r.Status, r.Detail = StatusWarn, fmt.Sprintf("test pods an interrupted doctor left could not be deleted: %s", strings.Join(failed, ", "))
		r.Fix = fmt.Sprintf("`kubectl -n %s delete pod -l %s`", ns, agentspec.LabelDoctor)
	case len(deleted) > 0:
		r.Status, r.Detail = StatusOK, fmt.Sprintf("deleted %d test pods an interrupted doctor left: %s", len(deleted), strings.Join(deleted, ", "))
	default:
		r.Status, r.Detail = StatusOK, "no test pod left by an earlier doctor"
	}
	return r
}
