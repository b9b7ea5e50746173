package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/tetherkube/tether/integration/cluster"
)

// costRequests is how many keep-alive GETs each round of a row of the
// agent's cost sends from the client pod (issue 13): issue 12 asks for a
// mirror sustained at 5,000 requests/s, and at that rate 20,000 are four
// seconds. Every row sends as many: on this VM a longer run alone lowers
// the p50 (busy vCPUs wake sooner), so rows of other lengths would not
// compare.
const costRequests = 20000

// latencyWarmUp is how many GETs demoapp's latency sends before those it
// measures, on the same connection.
const latencyWarmUp = 50

// costResults are the in-cluster caller's latencies with no agent, with a
// plain relay in front of the app (the floor of any hop), with the agent
// recording, with the agent idle (recording paused), with the agent
// stepped aside (the Service pointed back at the app), and with the agent
// aside recording from a copy of the packets (record --passive), and how
// many of that row's requests it recorded; noneAfter is no agent again,
// after the rollback at the end: the machine's drift over the run.
//
// The mirror rows: the agent in front mirroring every request to this
// machine, and the agent aside mirroring from the packets it records
// (intercept --mirror after record --passive), with what their copies
// became.
type costResults struct {
	none, relay, recording, idle, aside, passive, noneAfter []row
	mirrorInPath, mirrorPassive                             []row
	// The agent's CPU and memory in the rows it is in, by row: recording,
	// mirrorInPath, passive, mirrorPassive.
	use                         map[string]agentUse
	passiveRecorded             int
	inPathCopies, passiveCopies mirrorCounts
	// rate is the callers' requests/s in the baseline rounds (one
	// keep-alive connection, one request after another).
	rate float64
	// twin holds, by row, the rounds of the same app with no agent ever
	// (deployment/plain, its own Service), each measured right after the
	// row's round: the machine's drift and noise fall on both alike.
	twin map[string][]row
}

// measureCost measures what the agent costs the workload's in-cluster
// callers: a client pod sends costRequests keep-alive GETs to the
// Service, o.rounds times per state: no agent; the agent in front and
// recording (as after `tether leave`, within its idle time); the agent
// idle with recording paused (its --record-idle set to 1s, a rollout);
// the agent stepped aside; `record --passive`; and no agent again after
// `tether rollback`, so the baseline spans the run.
func measureCost(ctx context.Context, rc *rest.Config, cs *kubernetes.Clientset, o options) (costResults, error) {
	var r costResults
	runtimeDir, err := os.MkdirTemp("", "tb")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(runtimeDir)
	cli := tetherCLI{bin: o.tetherBin, kubeconfig: o.kubeconfig, namespace: o.namespace, runtimeDir: runtimeDir}
	defer cli.run(context.Background(), "quit")
	client, err := startClient(ctx, cs, o.namespace)
	if err != nil {
		return r, err
	}
	url := "http://orders." + o.namespace + ".svc.cluster.local/orders/7"
	// Ready is a caller of the Service served, five times in a row, each
	// within 5 s: the node's rules for a new Service can come after its pod
	// is ready (two runs failed on "connection refused" right after the
	// last run's namespace went), and after a rollback one run's first
	// request waited 30 s for an answer.
	served := func(url string) error {
		streak := 0
		return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
			tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if _, err := cluster.Exec(tctx, rc, o.namespace, client, "/tether-demo", "get", url); err != nil {
				streak = 0
				return false, nil
			}
			streak++
			return streak == 5, nil
		})
	}
	if err := served(url); err != nil {
		return r, fmt.Errorf("the client pod never reached %s: %w", url, err)
	}
	twinURL, err := deployTwin(ctx, cs, o.namespace)
	if err != nil {
		return r, err
	}
	if err := served(twinURL); err != nil {
		return r, fmt.Errorf("the client pod never reached %s: %w", twinURL, err)
	}
	var rates []float64
	latency := func(url string) (row, error) {
		out, err := cluster.Exec(ctx, rc, o.namespace, client, "/tether-demo", "latency", url, fmt.Sprint(costRequests))
		if err != nil {
			return row{}, fmt.Errorf("latency from the client pod: %w: %s", err, out)
		}
		var m row
		if m.p50, m.p99 = parseLatency(out); m.p50 == 0 {
			return row{}, fmt.Errorf("latency from the client pod: %s", out)
		}
		if f := regexp.MustCompile(`per_s (\d+)`).FindStringSubmatch(out); f != nil && url == twinURL {
			n, _ := strconv.ParseFloat(f[1], 64)
			rates = append(rates, n)
		}
		return m, nil
	}
	r.twin = map[string][]row{}
	// measure measures the row's rounds into into, each paired with one
	// of the twin's, kept as r.twin[key]: the row first in even rounds,
	// the twin first in odd ones (the first of a pair read about 10%
	// slower at p99 in a run that always put the row first: no agent's
	// own rows read 1.10x and 1.11x their twins). With g, it returns the
	// CPU g used during the row's own rounds, not the twin's (-1: g could
	// not be read).
	measureCPU := func(key string, into *[]row, g *agentCgroup) (cpu int64, err error) {
		for i := range o.rounds {
			urls := []string{url, twinURL}
			if i%2 == 1 {
				urls[0], urls[1] = twinURL, url
			}
			for _, u := range urls {
				var c0 int64
				if g != nil && u == url && cpu >= 0 {
					if c0, err = g.cpuNanos(); err != nil {
						cpu = -1
					}
				}
				m, err := latency(u)
				if err != nil {
					if u == twinURL {
						err = fmt.Errorf("the twin: %w", err)
					}
					return 0, err
				}
				if u == twinURL {
					r.twin[key] = append(r.twin[key], m)
					continue
				}
				*into = append(*into, m)
				if g != nil && cpu >= 0 {
					if c1, err := g.cpuNanos(); err != nil {
						cpu = -1
					} else {
						cpu += c1 - c0
					}
				}
			}
		}
		return cpu, nil
	}
	measure := func(key string, into *[]row) error {
		_, err := measureCPU(key, into, nil)
		return err
	}
	r.use = map[string]agentUse{}
	// used measures into as measure does, with the agent's CPU and memory
	// kept as r.use[key].
	used := func(into *[]row, key string) error {
		g, gerr := findAgentCgroup(ctx, cs, o.namespace)
		if gerr != nil {
			fmt.Fprintf(os.Stderr, "bench: the agent's CPU not measured: %v\n", gerr)
			return measure(key, into)
		}
		cpu, err := measureCPU(key, into, g)
		if err != nil || cpu < 0 {
			return err
		}
		u := agentUse{ok: true, cpuMsPer1000: float64(cpu) / 1e6 / (float64(len(*into)*(costRequests+latencyWarmUp)) / 1000)}
		u.memory, u.peak = g.memory()
		r.use[key] = u
		return nil
	}
	if err := measure("none", &r.none); err != nil {
		return r, fmt.Errorf("no agent: %w", err)
	}
	r.rate = medianFloat(rates) // the twin's, as no agent's
	copies, stopLaptop, err := copyCounter()
	if err != nil {
		return r, err
	}
	defer stopLaptop()
	// mirrored measures into with a mirror of every request to this
	// machine, then counts what its copies became.
	mirrored := func(into *[]row, key string, counts *mirrorCounts) error {
		from := copies.Load()
		args := []string{"intercept", "deploy/orders", "--port", fmt.Sprintf("http:%d", copies.port), "--mirror"}
		if o.agentImage != "" {
			args = append(args, "--agent-image", o.agentImage)
		}
		if _, err := cli.run(ctx, args...); err != nil {
			return err
		}
		if err := used(into, key); err != nil {
			return err
		}
		sent := len(*into) * (costRequests + latencyWarmUp)
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			c, err := readMirrorCounts(ctx, cli)
			if err != nil {
				return err
			}
			*counts = c
			if c.delivered+c.dropped >= uint64(sent) || time.Now().After(deadline) {
				break
			}
		}
		counts.sent, counts.received = sent, int(copies.Load()-from)
		_, err := cli.run(ctx, "leave", "deploy/orders")
		return err
	}
	restore, err := plainRelay(ctx, cs, o.namespace)
	if err != nil {
		return r, err
	}
	if err := measure("relay", &r.relay); err != nil {
		return r, fmt.Errorf("a plain relay: %w", err)
	}
	if err := restore(); err != nil {
		return r, err
	}
	args := []string{"record", "deploy/orders", "--port", "http"}
	if o.agentImage != "" {
		args = append(args, "--agent-image", o.agentImage)
	}
	if _, err := cli.run(ctx, args...); err != nil {
		return r, err
	}
	if err := used(&r.recording, "recording"); err != nil {
		return r, fmt.Errorf("agent in front, recording: %w", err)
	}
	if err := mirrored(&r.mirrorInPath, "mirrorInPath", &r.inPathCopies); err != nil {
		return r, fmt.Errorf("mirror in front: %w", err)
	}
	if err := setRecordIdle(ctx, cs, o.namespace, "1s"); err != nil {
		return r, err
	}
	time.Sleep(2 * time.Second) // the new agent's idle time, and kube-proxy's
	if err := measure("idle", &r.idle); err != nil {
		return r, fmt.Errorf("agent idle: %w", err)
	}
	// An intercept and its leave start the daemon's watch; once the agent
	// has been idle its 1s, the daemon points the Service at the app.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return r, err
	}
	defer l.Close()
	local := l.Addr().(*net.TCPAddr).Port
	args = []string{"intercept", "deploy/orders", "--port", fmt.Sprintf("http:%d", local)}
	if o.agentImage != "" {
		args = append(args, "--agent-image", o.agentImage)
	}
	if _, err := cli.run(ctx, args...); err != nil {
		return r, err
	}
	if _, err := cli.run(ctx, "leave", "deploy/orders"); err != nil {
		return r, err
	}
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		s, err := cs.CoreV1().Services(o.namespace).Get(ctx, "orders", metav1.GetOptions{})
		return err == nil && s.Spec.Ports[0].TargetPort.Type == intstr.Int, nil
	})
	if err != nil {
		return r, fmt.Errorf("the idle agent did not step aside: %w", err)
	}
	time.Sleep(2 * time.Second) // kube-proxy's
	if err := measure("aside", &r.aside); err != nil {
		return r, fmt.Errorf("agent aside: %w", err)
	}

	// record --passive restarts the agent with an empty recording; it
	// steps aside before the command returns. The template first gets
	// back the --record-idle tether set: tether refuses to change a
	// template someone else changed since.
	if err := setRecordIdle(ctx, cs, o.namespace, "0"); err != nil {
		return r, err
	}
	args = []string{"record", "deploy/orders", "--port", "http", "--passive"}
	if o.agentImage != "" {
		args = append(args, "--agent-image", o.agentImage)
	}
	if _, err := cli.run(ctx, args...); err != nil {
		return r, err
	}
	time.Sleep(2 * time.Second) // kube-proxy's
	if err := used(&r.passive, "passive"); err != nil {
		return r, fmt.Errorf("recording from packets: %w", err)
	}
	out, err := cli.run(ctx, "requests", "list", "deploy/orders", "-o", "json")
	if err != nil {
		return r, err
	}
	var rows []struct{ Path string }
	if i := strings.Index(out, "["); i < 0 || json.Unmarshal([]byte(out[i:]), &rows) != nil {
		return r, fmt.Errorf("requests list -o json: %s", out)
	}
	for _, x := range rows {
		if x.Path == "/orders/7" {
			r.passiveRecorded++
		}
	}
	if err := mirrored(&r.mirrorPassive, "mirrorPassive", &r.passiveCopies); err != nil {
		return r, fmt.Errorf("mirror from packets: %w", err)
	}
	if _, err := cli.run(ctx, "rollback", "deploy/orders"); err != nil {
		return r, err
	}
	// The rollback's rollout replaces the pod: wait until the old one is
	// gone (its app closes its listener on SIGTERM while the Service may
	// still send to it: "connection refused" mid-row otherwise).
	d, err := cs.AppsV1().Deployments(o.namespace).Get(ctx, "orders", metav1.GetOptions{})
	if err != nil {
		return r, err
	}
	if err := waitRollout(ctx, cs, o.namespace, d.Generation); err != nil {
		return r, fmt.Errorf("the rollback's rollout: %w", err)
	}
	t0 := time.Now()
	if err := served(url); err != nil {
		return r, fmt.Errorf("after rollback, the client pod never reached %s: %w", url, err)
	}
	fmt.Fprintf(os.Stderr, "bench: after the rollback, served 5 times in a row after %s\n", time.Since(t0).Round(time.Millisecond))
	if err := measure("noneAfter", &r.noneAfter); err != nil {
		return r, fmt.Errorf("no agent again: %w", err)
	}
	return r, nil
}

// deployTwin deploys the orders app again as deployment/plain behind
// service/plain, which tether never touches, and returns the URL the
// client pod reaches it by.
func deployTwin(ctx context.Context, cs *kubernetes.Clientset, ns string) (string, error) {
	if err := createOrders(ctx, cs, ns, "plain"); err != nil {
		return "", fmt.Errorf("the twin: %w", err)
	}
	d, err := cs.AppsV1().Deployments(ns).Get(ctx, "plain", metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	if err := waitRollout(ctx, cs, ns, d.Generation); err != nil {
		return "", fmt.Errorf("the twin's rollout: %w", err)
	}
	return "http://plain." + ns + ".svc.cluster.local/orders/7", nil
}

// relayPort is where plainRelay's relay listens in the orders pods.
const relayPort = 7390

// plainRelay puts a plain relay (tether-demo relay: io.Copy each way) in
// front of the app in deployment/orders and points the Service at it; it
// returns what puts both back. Each waits for the rollout and kube-proxy.
func plainRelay(ctx context.Context, cs *kubernetes.Clientset, ns string) (func() error, error) {
	d, err := cs.AppsV1().Deployments(ns).Get(ctx, "orders", metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	svc, err := cs.CoreV1().Services(ns).Get(ctx, "orders", metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	origTmpl, origPorts := *d.Spec.Template.DeepCopy(), slices.Clone(svc.Spec.Ports)
	app := d.Spec.Template.Spec.Containers[0]
	relay := corev1.Container{Name: "relay", Image: app.Image, ImagePullPolicy: app.ImagePullPolicy, SecurityContext: app.SecurityContext,
		Args: []string{"relay", fmt.Sprintf(":%d", relayPort), "127.0.0.1:8080"}}
	set := func(tmpl corev1.PodTemplateSpec, ports []corev1.ServicePort) error {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, "orders", metav1.GetOptions{})
		if err != nil {
			return err
		}
		d.Spec.Template = tmpl
		if d, err = cs.AppsV1().Deployments(ns).Update(ctx, d, metav1.UpdateOptions{}); err != nil {
			return err
		}
		if err := waitRollout(ctx, cs, ns, d.Generation); err != nil {
			return err
		}
		s, err := cs.CoreV1().Services(ns).Get(ctx, "orders", metav1.GetOptions{})
		if err != nil {
			return err
		}
		s.Spec.Ports = ports
		if _, err := cs.CoreV1().Services(ns).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			return err
		}
		time.Sleep(2 * time.Second) // kube-proxy's
		return nil
	}
	tmpl := *origTmpl.DeepCopy()
	tmpl.Spec.Containers = append(tmpl.Spec.Containers, relay)
	ports := slices.Clone(origPorts)
	ports[0].TargetPort = intstr.FromInt32(relayPort)
	if err := set(tmpl, ports); err != nil {
		return nil, fmt.Errorf("a plain relay in front of the app: %w", err)
	}
	return func() error { return set(origTmpl, origPorts) }, nil
}

// setRecordIdle sets the agent's --record-idle in deployment/orders and
// waits for the rollout.
func setRecordIdle(ctx context.Context, cs *kubernetes.Clientset, ns, idle string) error {
	d, err := cs.AppsV1().Deployments(ns).Get(ctx, "orders", metav1.GetOptions{})
	if err != nil {
		return err
	}
	found := false
	for i, c := range d.Spec.Template.Spec.Containers {
		if c.Name != "tether-agent" {
			continue
		}
		found = true
		if j := slices.Index(c.Args, "--record-idle"); j >= 0 && j+1 < len(c.Args) {
			c.Args[j+1] = idle
		} else {
			c.Args = append([]string{"--record-idle", idle}, c.Args...)
		}
		d.Spec.Template.Spec.Containers[i].Args = c.Args
	}
	if !found {
		return fmt.Errorf("deployment/orders has no tether-agent container")
	}
	if d, err = cs.AppsV1().Deployments(ns).Update(ctx, d, metav1.UpdateOptions{}); err != nil {
		return err
	}
	return waitRollout(ctx, cs, ns, d.Generation)
}

// waitRollout waits until deployment/orders rolled out generation gen and
// no old pod remains.
func waitRollout(ctx context.Context, cs *kubernetes.Clientset, ns string, gen int64) error {
	return wait.PollUntilContextTimeout(ctx, 300*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, "orders", metav1.GetOptions{})
		if err != nil || !rolledOut(d, gen) {
			return false, nil
		}
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=orders"})
		if err != nil {
			return false, nil
		}
		for _, p := range pods.Items {
			if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
				return false, nil // an old pod still goes away
			}
		}
		return true, nil
	})
}

func rolledOut(d *appsv1.Deployment, gen int64) bool {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	return d.Status.ObservedGeneration >= gen && d.Status.UpdatedReplicas == want && d.Status.AvailableReplicas == want && d.Status.Replicas == want
}

// printCost prints the cost rows: medians of the rounds, the ranges, and
// the ratios to no agent.
func printCost(w io.Writer, r costResults, rounds int) {
	fmt.Fprintf(w, "== the agent's cost to in-cluster callers: a client pod, %d keep-alive GETs to the Service, %d rounds per row (median, [min-max])\n", costRequests, rounds)
	base := median("", slices.Concat(r.none, r.noneAfter)) // both ends: the drift counts both ways
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "caller -> Service -> ...\tp50\tp50 ratio\tvs twin\tp99\tp99 ratio\tvs twin\t")
	for _, x := range []struct {
		name, key string
		rows      []row
	}{
		{"no agent, first (the baseline: with the rounds of \"no agent again\")", "none", r.none},
		{"a plain relay in front (io.Copy; the floor of any hop)", "relay", r.relay},
		{"agent in front, recording (nothing intercepting)", "recording", r.recording},
		{"agent in front, recording and mirroring every request to this machine", "mirrorInPath", r.mirrorInPath},
		{"agent in front, idle: recording paused (spliced)", "idle", r.idle},
		{"agent stepped aside (Service back at the app)", "aside", r.aside},
		{fmt.Sprintf("agent aside, recording from packets (record --passive; %d of %d recorded)", r.passiveRecorded, len(r.passive)*(costRequests+latencyWarmUp)), "passive", r.passive},
		{"agent aside, recording from packets and mirroring every request from them", "mirrorPassive", r.mirrorPassive},
		{"no agent again, after rollback (the machine's drift)", "noneAfter", r.noneAfter},
	} {
		m := median(x.name, x.rows)
		lo, hi := spread(x.rows)
		t := median("", r.twin[x.key])
		fmt.Fprintf(tw, "%s\t%s [%s-%s]\t%.2fx\t%.2fx\t%s [%s-%s]\t%.2fx\t%.2fx\t\n", x.name,
			us(m.p50), us(lo.p50), us(hi.p50), ratio(m.p50, base.p50), ratio(m.p50, t.p50),
			us(m.p99), us(lo.p99), us(hi.p99), ratio(m.p99, base.p99), ratio(m.p99, t.p99))
	}
	tw.Flush()
	fmt.Fprintln(w, "vs twin: against the same app with no agent (deployment/plain), a round of it paired with each of the row's (row first, then twin first, in turn)")
	if r.rate > 0 { // an older demo image prints none
		fmt.Fprintf(w, "the callers' rate with no agent: %.0f requests/s (one connection, one request after another)\n", r.rate)
	}
	for _, x := range []struct{ name, key string }{{"in front, recording", "recording"}, {"in front, mirroring", "mirrorInPath"},
		{"recording from packets", "passive"}, {"mirroring from packets", "mirrorPassive"}} {
		if u := r.use[x.key]; u.ok {
			fmt.Fprintf(w, "agent %s: %.0f ms of CPU per 1,000 requests (%.2f cores at 5,000/s); memory %.1f MiB after the row, peak %.1f MiB\n",
				x.name, u.cpuMsPer1000, u.cpuMsPer1000*5/1000, mib(u.memory), mib(u.peak))
		}
	}
	for _, x := range []struct {
		name string
		c    mirrorCounts
	}{{"in front", r.inPathCopies}, {"from packets", r.passiveCopies}} {
		fmt.Fprintf(w, "mirror %s: %d requests, %d copies received here; the agent counted %d delivered, %d dropped (%d of them near its CPU limit)\n",
			x.name, x.c.sent, x.c.received, x.c.delivered, x.c.dropped, x.c.shed)
	}
}

func spread(rows []row) (lo, hi row) {
	for i, r := range rows {
		if i == 0 || r.p50 < lo.p50 {
			lo.p50 = r.p50
		}
		if i == 0 || r.p99 < lo.p99 {
			lo.p99 = r.p99
		}
		hi.p50, hi.p99 = max(hi.p50, r.p50), max(hi.p99, r.p99)
	}
	return lo, hi
}

func us(d time.Duration) string { return fmt.Sprintf("%dµs", d.Microseconds()) }
