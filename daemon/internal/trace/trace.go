package trace

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tetherkube/tether/agent"
)

// Prober sends probes from the source pod's network namespace: an
// inspection agent's client.
type Prober interface {
	ResolvConf(ctx context.Context) ([]byte, error)
	QueryDNS(ctx context.Context, q agent.DNSQuery) (agent.DNSAnswer, error)
	Probe(ctx context.Context, req agent.ProbeRequest) (agent.ProbeResult, error)
}

// Tracer traces paths from pods.
type Tracer struct {
	CS     kubernetes.Interface
	Prober Prober
	// Progress gets a line as each step starts; may be nil.
	Progress func(string)
	// Timeout bounds each DNS query and probe (default 2s).
	Timeout time.Duration
}

// state is what one step learns for the next.
type state struct {
	src    *corev1.Pod
	target Target

	// addresses the destination resolved to (DNS) or was given as.
	addresses []string
	// answeredName is the name that resolved (DNS).
	answeredName string
	svc          *corev1.Service
	svcPort      *corev1.ServicePort
	// port is the destination port as a number, once known.
	port int32
	// endpoints are the destinations behind the Service, or the pod.
	endpoints []Endpoint
	pods      map[string]*corev1.Pod // by endpoint address
	http      *agent.HTTPProbe
	// policyDenies: the policies deny every destination.
	policyDenies bool
}

// Run traces the path from src (picked from pickedFrom, when not empty) to
// t. Failures along the path are in the report; the error is for a trace
// that could not run at all (the agent is gone, the context ended).
func (tr *Tracer) Run(ctx context.Context, src *corev1.Pod, pickedFrom string, t Target) (Report, error) {
	start := time.Now()
	if tr.Timeout == 0 {
		tr.Timeout = 2 * time.Second
	}
	s := &state{src: src, target: t, pods: map[string]*corev1.Pod{}}
	rep := Report{
		Source: Source{Pod: src.Name, Namespace: src.Namespace, IP: src.Status.PodIP, Node: src.Spec.NodeName, PickedFrom: pickedFrom},
		Target: t,
	}
	srcStep := Step{Name: StepSource, Status: OK, Summary: fmt.Sprintf("pod %s/%s, %s on node %s", src.Namespace, src.Name, src.Status.PodIP, src.Spec.NodeName)}
	if pickedFrom != "" {
		srcStep.Details = append(srcStep.Details, fmt.Sprintf("picked from %s (a ready pod)", pickedFrom))
	}
	rep.Steps = append(rep.Steps, srcStep)
	steps := []struct {
		name, what string
		run        func(context.Context, *state) (Step, error)
	}{
		{StepDNS, "resolving the name from the pod", tr.dns},
		{StepService, "reading the Service and its endpoints", tr.service},
		{StepPolicy, "evaluating NetworkPolicies", tr.policy},
		{StepProbe, "probing from the pod", tr.probe},
	}
	for _, st := range steps {
		if tr.Progress != nil {
			tr.Progress(st.what)
		}
		step, err := st.run(ctx, s)
		if err != nil {
			return rep, fmt.Errorf("trace %s step: %w", st.name, err)
		}
		step.Name = st.name
		rep.Steps = append(rep.Steps, step)
	}
	rep.Conclusion = "path healthy"
	warnings := 0
	for _, st := range rep.Steps {
		if st.Status == Broken && rep.FirstBroken == "" {
			rep.FirstBroken = st.Name
			rep.Conclusion = fmt.Sprintf("broken at %s: %s", st.Name, st.Summary)
		}
		if st.Status == Warn {
			warnings++
		}
	}
	if rep.FirstBroken == "" && warnings > 0 {
		rep.Conclusion = fmt.Sprintf("path healthy, %d %s", warnings, plural(warnings, "warning"))
	}
	rep.DurationMillis = millis(time.Since(start))
	return rep, nil
}

func millis(d time.Duration) float64 {
	return float64(d.Microseconds()) / 1000
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

func skipped(summary string) Step {
	return Step{Status: Skipped, Summary: summary}
}

// worst returns the worse of two statuses.
func worst(a, b Status) Status {
	rank := map[Status]int{OK: 0, Skipped: 0, Warn: 1, Broken: 2}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

func labelString(m map[string]string) string {
	if len(m) == 0 {
		return "(none)"
	}
	var parts []string
	for k, v := range m {
		parts = append(parts, k+"="+v)
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}
