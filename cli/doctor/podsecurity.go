package doctor

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tetherkube/tether/internal/agentspec"
)

// Pod Security Standards levels, least to most restrictive.
const (
	levelPrivileged = "privileged"
	levelBaseline   = "baseline"
	levelRestricted = "restricted"
)

func levelRank(l string) int {
	switch l {
	case levelPrivileged:
		return 0
	case levelBaseline:
		return 1
	case levelRestricted:
		return 2
	}
	return -1
}

// baselineCaps are the capabilities the baseline level lets a container add.
var baselineCaps = []corev1.Capability{"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}

// levelNeeded returns the most restrictive Pod Security level a container
// with security context sc passes (its pod setting nothing), and why a
// stricter one refuses it: the container-level rules of the Pod Security
// Standards that an agent's security context can touch.
func levelNeeded(sc *corev1.SecurityContext) (string, []string) {
	if sc == nil {
		sc = &corev1.SecurityContext{}
	}
	var privileged []string
	if sc.Privileged != nil && *sc.Privileged {
		privileged = append(privileged, "privileged: true")
	}
	if sc.Capabilities != nil {
		for _, c := range sc.Capabilities.Add {
			if !slices.Contains(baselineCaps, c) {
				privileged = append(privileged, "adds capability "+string(c))
			}
		}
	}
	if sc.SeccompProfile != nil && sc.SeccompProfile.Type == corev1.SeccompProfileTypeUnconfined {
		privileged = append(privileged, "seccomp Unconfined")
	}
	if len(privileged) > 0 {
		return levelPrivileged, privileged
	}
	var baseline []string
	switch {
	case sc.RunAsUser != nil && *sc.RunAsUser == 0:
		baseline = append(baseline, "runs as root (runAsUser 0)")
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
		baseline = append(baseline, "runAsNonRoot is not true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		baseline = append(baseline, "allowPrivilegeEscalation is not false")
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		baseline = append(baseline, "keeps the runtime's default capabilities (NET_RAW among them)")
	}
	if sc.Capabilities != nil {
		for _, c := range sc.Capabilities.Add {
			if c != "NET_BIND_SERVICE" {
				baseline = append(baseline, "adds capability "+string(c))
			}
		}
	}
	if sc.SeccompProfile == nil || (sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault && sc.SeccompProfile.Type != corev1.SeccompProfileTypeLocalhost) {
		baseline = append(baseline, "no RuntimeDefault or Localhost seccomp profile")
	}
	if len(baseline) > 0 {
		return levelBaseline, baseline
	}
	return levelRestricted, nil
}

// blocked lists tether's agent uses that level refuses, each with why.
func blocked(level string, uses []agentspec.Use) (refused, allowed []string) {
	for _, u := range uses {
		need, why := levelNeeded(u.SecurityContext)
		if levelRank(level) > levelRank(need) {
			refused = append(refused, fmt.Sprintf("%s (its %s %s)", strings.Join(u.Features, ", "), u.Agent, strings.Join(why, ", ")))
		} else {
			allowed = append(allowed, u.Features...)
		}
	}
	return refused, allowed
}

// checkPodSecurity reads the namespace's Pod Security labels and says which
// of tether's features its enforced level blocks. Where the user may
// create pods it asks the API server too: a server-side dry run of a pod
// with each agent's security context, which also catches a cluster-wide
// default level or another admission policy the labels do not show.
func (o *DoctorOptions) checkPodSecurity(ctx context.Context) Result {
	r := Result{Check: "pod security"}
	ctx, cancel := context.WithTimeout(ctx, o.CheckTimeout)
	defer cancel()
	ns := o.Kube.Namespace
	uses := agentspec.Uses()
	dry := make(chan []dryRun, 1)
	go func() { dry <- o.dryRunAgents(ctx, uses) }()

	nsObj, err := o.client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	runs := <-dry
	if apierrors.IsNotFound(err) {
		r.Status, r.Detail = StatusFail, fmt.Sprintf("namespace %s does not exist", ns)
		r.Fix = "pass an existing namespace with -n (`kubectl get namespaces` lists them)"
		return r
	}
	var labels map[string]string
	levels := fmt.Sprintf("namespace %s", ns)
	enforce := ""
	switch {
	case err == nil:
		labels = nsObj.Labels
		enforce = labels["pod-security.kubernetes.io/enforce"]
		levels += fmt.Sprintf(": enforce=%s", orNone(enforce))
		for _, mode := range []string{"warn", "audit"} {
			if v := labels["pod-security.kubernetes.io/"+mode]; v != "" {
				levels += fmt.Sprintf(", %s=%s", mode, v)
			}
		}
	case apierrors.IsForbidden(err):
		levels += " (you may not read its labels: get namespaces)"
	default:
		levels += fmt.Sprintf(" (its labels could not be read: %v)", err)
	}
	if enforce != "" && levelRank(enforce) < 0 {
		r.Status, r.Detail = StatusWarn, fmt.Sprintf("%s: %q is not a Pod Security level (privileged, baseline, restricted)", levels, enforce)
		r.Fix = fmt.Sprintf("`kubectl label namespace %s pod-security.kubernetes.io/enforce=baseline --overwrite` (or restricted)", ns)
		return r
	}

	var refused []string
	switch {
	case runs != nil:
		// The API server's answer is the truth; the labels say why.
		for i, u := range uses {
			if runs[i].refused == "" {
				continue
			}
			why := ""
			if need, reasons := levelNeeded(u.SecurityContext); enforce != "" && levelRank(enforce) > levelRank(need) {
				why = strings.Join(reasons, ", ") + "; "
			}
			refused = append(refused, fmt.Sprintf("%s (its %s %sthe API server refuses a dry run of it: %s)", strings.Join(u.Features, ", "), u.Agent, why, runs[i].refused))
		}
	case err == nil && enforce != "":
		refused, _ = blocked(enforce, uses)
	case err == nil:
		r.Status = StatusOK
		r.Detail = levels + ": no enforce label, so the cluster's default level applies (privileged unless the admin configured another); capture's agent needs \"baseline\", every other agent passes \"restricted\""
		return r
	default:
		r.Status = StatusWarn
		r.Detail = levels + ", and no dry run without create on pods: its Pod Security level is unknown; capture's agent needs \"baseline\", every other agent passes \"restricted\""
		r.Fix = fmt.Sprintf("someone who may can run `kubectl get namespace %s --show-labels`", ns)
		return r
	}
	var notes []string
	for _, mode := range []string{"warn", "audit"} {
		if v := labels["pod-security.kubernetes.io/"+mode]; levelRank(v) > levelRank(enforce) {
			if w, _ := blocked(v, uses); len(w) > 0 {
				notes = append(notes, fmt.Sprintf("the %s=%s level only reports (does not block) %s", mode, v, featuresOf(w)))
			}
		}
	}
	if len(refused) == 0 {
		r.Status = StatusOK
		r.Detail = levels + " allows every tether agent"
		if runs != nil {
			r.Detail += " (the API server accepts a dry run of each)"
		}
		if len(notes) > 0 {
			r.Detail += "; " + strings.Join(notes, "; ")
		}
		return r
	}
	r.Status = StatusWarn
	r.Detail = fmt.Sprintf("%s blocks %s; every other feature works", levels, strings.Join(refused, "; "))
	r.Fix = fmt.Sprintf("these need the baseline level: `kubectl label namespace %s pod-security.kubernetes.io/enforce=baseline --overwrite` where your cluster's policy allows it, or use them in a namespace that allows baseline", ns)
	return r
}

// dryRun is the API server's answer to a dry run of one agent's pod:
// refused holds its reason, "" when accepted.
type dryRun struct{ refused string }

// dryRunAgents asks the API server, without creating anything, whether it
// admits a pod with each agent use's security context; nil when it cannot
// tell (the user may not create pods, or it did not answer).
func (o *DoctorOptions) dryRunAgents(ctx context.Context, uses []agentspec.Use) []dryRun {
	out := make([]dryRun, len(uses))
	for i, u := range uses {
		p := testPod("tether-doctor-dry-run", o.AgentImage, []byte("dry-run"))
		p.Spec.Containers[0].SecurityContext = u.SecurityContext
		_, err := o.client.CoreV1().Pods(o.Kube.Namespace).Create(ctx, p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		switch {
		case err == nil:
		case apierrors.IsForbidden(err) && strings.Contains(err.Error(), "cannot create resource"):
			return nil // RBAC: no dry run without create on pods
		case apierrors.IsForbidden(err) || apierrors.IsInvalid(err):
			msg := err.Error()
			if _, after, ok := strings.Cut(msg, "is forbidden: "); ok {
				msg = after
			}
			out[i].refused = msg
		default:
			return nil
		}
	}
	return out
}

// featuresOf shortens blocked's entries to their features.
func featuresOf(entries []string) string {
	var out []string
	for _, e := range entries {
		f, _, _ := strings.Cut(e, " (its ")
		out = append(out, f)
	}
	return strings.Join(out, "; ")
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
