package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/tetherkube/tether/integration/cluster"
	"github.com/tetherkube/tether/integration/demoapp"
)

// readyResult is one tether binary's intercept times (issue 13 item 3):
// the first intercept of a running workload, measured against the end of
// its rollout as the Deployment's status reports it, and re-intercepts
// (leave, then intercept again, the agents in place).
type readyResult struct {
	bin string
	// afterRollout is, per first intercept, the time from the rollout's
	// end (every replica of the new template Ready, seen through a watch)
	// to the command's return; rollout is the rollout itself (tether's
	// template change to that end).
	first, rollout, afterRollout []time.Duration
	again                        []time.Duration
	// plain is, per round, a rollout of the Deployment without tether
	// (its template's restart annotation changed, as `kubectl rollout
	// restart` does), from the update to the status reporting it done:
	// how long this Deployment's rollouts take without the agent.
	plain []time.Duration
	// proxied, per first intercept where kube-proxy's metrics could be
	// read: from the rollout's end to kube-proxy's sync that applied the
	// Service's last endpoint change, and from that sync to the command's
	// return (negative: it returned first); proxyLines tell each round's
	// slice changes and syncs.
	proxied, returnAfterProxied []time.Duration
	proxyLines                  []string
}

// measureReady times first intercepts and re-intercepts of deploy/orders
// with o.replicas pods, for the binary under test and, with -compare, for
// another one, interleaved round by round (each binary runs its own
// daemon, the two alternate which goes first).
func measureReady(ctx context.Context, rc *rest.Config, cs *kubernetes.Clientset, o options) ([]*readyResult, error) {
	ns := o.namespace
	if err := scaleOrders(ctx, cs, ns, int32(o.replicas)); err != nil {
		return nil, err
	}
	client, err := startClient(ctx, cs, ns)
	if err != nil {
		return nil, err
	}
	lap, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: demoapp.NewServer("laptop").Handler()}
	go srv.Serve(lap)
	defer srv.Close()
	port := strconv.Itoa(lap.Addr().(*net.TCPAddr).Port)

	bins := []string{o.tetherBin}
	if o.compare != "" {
		bins = append(bins, o.compare)
	}
	var rs []*readyResult
	clis := map[*readyResult]tetherCLI{}
	for i, bin := range bins {
		dir, err := os.MkdirTemp("", "tb")
		if err != nil {
			return nil, err
		}
		if o.logs == "" {
			defer os.RemoveAll(dir)
		} else {
			fmt.Fprintf(os.Stderr, "%s: daemon folder %s\n", bin, dir)
		}
		cli := tetherCLI{bin: bin, kubeconfig: o.kubeconfig, namespace: ns, runtimeDir: dir}
		defer cli.run(context.Background(), "quit")
		if _, err := cli.run(ctx, "connect"); err != nil { // the daemon up, as a developer's already is
			return nil, err
		}
		r := &readyResult{bin: bin}
		if i > 0 {
			r.bin += " (-compare)"
		}
		rs = append(rs, r)
		clis[r] = cli
	}
	// argsOf is r's intercept command; -compare-agent-image only for
	// first intercepts (re-intercepts share the agent in place).
	argsOf := func(r *readyResult, first bool) []string {
		args := []string{"intercept", "deploy/orders", "--port", "http:" + port}
		image := o.agentImage
		if first && r != rs[0] && o.compareAgentImage != "" {
			image = o.compareAgentImage
		}
		if image != "" {
			args = append(args, "--agent-image", image)
		}
		return args
	}
	served := func() error {
		out, err := cluster.Exec(ctx, rc, ns, client, "/tether-demo", "get", "http://orders."+ns+".svc.cluster.local/whoami")
		if err != nil || !strings.Contains(out, "X-Served-By: laptop") {
			return fmt.Errorf("the first request after the intercept returned was not served by the laptop: %v %s", err, out)
		}
		return nil
	}

	// First intercepts: each round adds the agent (a rollout), then rolls
	// it back and waits for that rollout to end.
	for round := range o.rounds {
		// The baseline: the same Deployment rolled out without tether.
		d, err := plainRollout(ctx, cs, ns)
		if err != nil {
			return rs, fmt.Errorf("plain rollout: %w", err)
		}
		for _, r := range rs {
			r.plain = append(r.plain, d)
		}
		for k := range rs {
			r := rs[(k+round)%len(rs)]
			cli := clis[r]
			pw, stopProxy, perr := watchProxy(ctx, cs, ns, "orders")
			if perr != nil && round == 0 {
				fmt.Fprintf(os.Stderr, "bench: kube-proxy's syncs not followed: %v\n", perr)
			}
			first, rollout, after, err := firstIntercept(ctx, cs, ns, cli, argsOf(r, true))
			if err != nil {
				if stopProxy != nil {
					stopProxy()
				}
				return rs, fmt.Errorf("%s: first intercept: %w", r.bin, err)
			}
			if pw != nil {
				r.noteProxy(pw, stopProxy, after)
			}
			if err := served(); err != nil {
				return rs, fmt.Errorf("%s: %w", r.bin, err)
			}
			r.first, r.rollout, r.afterRollout = append(r.first, first), append(r.rollout, rollout), append(r.afterRollout, after)
			if _, err := cli.run(ctx, "leave", "deploy/orders"); err != nil {
				return rs, err
			}
			if _, err := cli.run(ctx, "rollback", "deploy/orders"); err != nil {
				return rs, err
			}
			if err := waitRolledOut(ctx, cs, ns, int32(o.replicas)); err != nil {
				return rs, err
			}
		}
	}

	// Re-intercepts: the agents in place (one intercept each to begin
	// with, untimed), then leave and intercept again, alternating.
	for _, r := range rs {
		if _, err := clis[r].run(ctx, argsOf(r, false)...); err != nil {
			return rs, err
		}
		if _, err := clis[r].run(ctx, "leave", "deploy/orders"); err != nil {
			return rs, err
		}
		// Its daemon sets the pinned rollout's selector back after the
		// return; a -compare binary from before that refuses a hold.
		if err := waitSelectorReleased(ctx, cs, ns); err != nil {
			return rs, err
		}
	}
	for round := range o.rounds * 2 {
		for k := range rs {
			r := rs[(k+round)%len(rs)]
			cli := clis[r]
			t0 := time.Now()
			if _, err := cli.run(ctx, argsOf(r, false)...); err != nil {
				return rs, err
			}
			r.again = append(r.again, time.Since(t0))
			if err := served(); err != nil {
				return rs, fmt.Errorf("%s: re-intercept: %w", r.bin, err)
			}
			if _, err := cli.run(ctx, "leave", "deploy/orders"); err != nil {
				return rs, err
			}
		}
	}
	if _, err := clis[rs[0]].run(ctx, "rollback", "deploy/orders"); err != nil {
		return rs, err
	}
	return rs, nil
}

// noteProxy waits (up to 2 s) for kube-proxy's sync that applies the
// Service's last endpoint change, stops pw and keeps what it saw against
// the command's return, after the rollout's end.
func (r *readyResult) noteProxy(pw *proxyWatch, stop func(), after time.Duration) {
	returned := time.Now() // within ms of the command's return
	deadline := returned.Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if _, _, ok := pw.settled(); ok {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	last, applied, ok := pw.settled()
	line := fmt.Sprintf("slice changes (ready/all) %v, kube-proxy syncs %v, relative to the return",
		pw.changesAround(returned), pw.syncsAround(returned))
	if ok {
		rolloutEnd := returned.Add(-after)
		r.proxied = append(r.proxied, applied.Sub(rolloutEnd))
		r.returnAfterProxied = append(r.returnAfterProxied, returned.Sub(applied))
		line = fmt.Sprintf("last ready change %+dms, applied by kube-proxy %+dms after the rollout's end; the return %+dms after that; ",
			last.Sub(rolloutEnd).Milliseconds(), applied.Sub(rolloutEnd).Milliseconds(), returned.Sub(applied).Milliseconds()) + line
	}
	r.proxyLines = append(r.proxyLines, line)
}

// firstIntercept runs an intercept that adds the agent, watching the
// Deployment and its pods meanwhile. It returns the command's time; the
// rollout's, from the template's change (tether's, as watched) to every
// replica of the new template Ready (the agent too: the earliest its pods
// can serve); and the time from that to the command's return. The
// Deployment's status is not the end: a pinned rollout holds it until
// tether lets the old pods go.
func firstIntercept(ctx context.Context, cs *kubernetes.Clientset, ns string, cli tetherCLI, args []string) (cmd, rollout, after time.Duration, err error) {
	d, err := cs.AppsV1().Deployments(ns).Get(ctx, "orders", metav1.GetOptions{})
	if err != nil {
		return 0, 0, 0, err
	}
	want := int(*d.Spec.Replicas)
	tmpl0 := d.Spec.Template
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=orders"})
	if err != nil {
		return 0, 0, 0, err
	}
	oldHashes := map[string]bool{}
	for _, p := range pods.Items {
		// Pods still terminating may be of the template about to come
		// back (the last round's): the same ReplicaSet.
		if p.DeletionTimestamp == nil {
			oldHashes[p.Labels[appsv1.DefaultDeploymentUniqueLabelKey]] = true
		}
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	dw, err := cs.AppsV1().Deployments(ns).Watch(wctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", "orders").String(),
		ResourceVersion: d.ResourceVersion})
	if err != nil {
		return 0, 0, 0, err
	}
	pw, err := cs.CoreV1().Pods(ns).Watch(wctx, metav1.ListOptions{LabelSelector: "app=orders", ResourceVersion: pods.ResourceVersion})
	if err != nil {
		return 0, 0, 0, err
	}
	type ends struct{ changed, ready time.Time }
	seen := make(chan ends, 1)
	go func() {
		var e ends
		defer func() { seen <- e }()
		readyNew := map[string]bool{}
		for e.changed.IsZero() || e.ready.IsZero() {
			select {
			case ev, ok := <-dw.ResultChan():
				if !ok {
					return
				}
				if d, ok := ev.Object.(*appsv1.Deployment); ok && e.changed.IsZero() && !equality.Semantic.DeepEqual(d.Spec.Template, tmpl0) {
					e.changed = time.Now()
				}
			case ev, ok := <-pw.ResultChan():
				if !ok {
					return
				}
				p, ok := ev.Object.(*corev1.Pod)
				if !ok || oldHashes[p.Labels[appsv1.DefaultDeploymentUniqueLabelKey]] {
					continue
				}
				readyNew[p.Name] = ev.Type != watch.Deleted && p.DeletionTimestamp == nil && podReady(p)
				n := 0
				for _, r := range readyNew {
					if r {
						n++
					}
				}
				if n >= want && e.ready.IsZero() {
					e.ready = time.Now()
				}
			}
		}
	}()
	t0 := time.Now()
	_, err = cli.run(ctx, args...)
	cmd = time.Since(t0)
	end := time.Now()
	if err != nil {
		return 0, 0, 0, err
	}
	var e ends
	select {
	case e = <-seen:
	case <-time.After(30 * time.Second):
		return 0, 0, 0, fmt.Errorf("the new pods were never seen ready")
	}
	if e.ready.IsZero() || e.changed.IsZero() {
		return 0, 0, 0, fmt.Errorf("the watch ended before the new pods were seen ready")
	}
	return cmd, e.ready.Sub(e.changed), end.Sub(e.ready), nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// plainRollout changes the Deployment's restart annotation as `kubectl
// rollout restart` does and returns the time from the update to the
// status reporting the rollout done.
func plainRollout(ctx context.Context, cs *kubernetes.Clientset, ns string) (time.Duration, error) {
	d, err := cs.AppsV1().Deployments(ns).Get(ctx, "orders", metav1.GetOptions{})
	if err != nil {
		return 0, err
	}
	w, err := cs.AppsV1().Deployments(ns).Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", "orders").String(),
		ResourceVersion: d.ResourceVersion})
	if err != nil {
		return 0, err
	}
	defer w.Stop()
	if d.Spec.Template.Annotations == nil {
		d.Spec.Template.Annotations = map[string]string{}
	}
	d.Spec.Template.Annotations["kubectl.kubernetes.io/restartedAt"] = time.Now().Format(time.RFC3339Nano)
	t0 := time.Now()
	d, err = cs.AppsV1().Deployments(ns).Update(ctx, d, metav1.UpdateOptions{})
	if err != nil {
		return 0, err
	}
	gen := d.Generation
	timeout := time.After(2 * time.Minute)
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				return 0, fmt.Errorf("the watch ended before the rollout was seen done")
			}
			if d, ok := ev.Object.(*appsv1.Deployment); ok && rolledOut(d, gen) {
				return time.Since(t0), nil
			}
		case <-timeout:
			return 0, fmt.Errorf("not rolled out after 2 minutes")
		}
	}
}

// rolloutComplete: the controller reports every replica of the current
// template updated and available, and no other.
func rolloutComplete(d *appsv1.Deployment) bool { return rolledOut(d, d.Generation) }

// waitRolledOut waits for the Deployment's current rollout to end.
// waitSelectorReleased waits until service/orders no longer requires a
// pod-template-hash (a first intercept's pinned rollout released).
func waitSelectorReleased(ctx context.Context, cs *kubernetes.Clientset, ns string) error {
	return wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		svc, err := cs.CoreV1().Services(ns).Get(ctx, "orders", metav1.GetOptions{})
		_, held := svc.Spec.Selector["pod-template-hash"]
		return err == nil && !held, nil
	})
}

func waitRolledOut(ctx context.Context, cs *kubernetes.Clientset, ns string, n int32) error {
	return wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, "orders", metav1.GetOptions{})
		return err == nil && rolloutComplete(d) && d.Status.ReadyReplicas == n, nil
	})
}

func printReady(w io.Writer, rs []*readyResult, o options) {
	fmt.Fprintf(w, "\n== intercept readiness: %d replicas, %d first intercepts and %d re-intercepts per binary, interleaved; load %s\n",
		o.replicas, o.rounds, 2*o.rounds, loadAvg())
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "binary\tfirst intercept\trollout (template change to new pods ready)\tintercept less rollout: median\tmax\tafter the rollout: median\tmin\tmax\tre-intercept: median\tmin\tmax\t")
	for _, r := range rs {
		var over []time.Duration
		for i := range r.first {
			over = append(over, r.first[i]-r.rollout[i])
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.bin,
			ms(medianDuration(r.first)), ms(medianDuration(r.rollout)), ms(medianDuration(over)), ms(maxDuration(over)),
			ms(medianDuration(r.afterRollout)), ms(minDuration(r.afterRollout)), ms(maxDuration(r.afterRollout)),
			ms(medianDuration(r.again)), ms(minDuration(r.again)), ms(maxDuration(r.again)))
	}
	tw.Flush()
	for _, r := range rs {
		var over []time.Duration
		for i := range r.first {
			over = append(over, r.first[i]-r.rollout[i])
		}
		fmt.Fprintf(w, "%s: first intercept %v; its rollout %v; the intercept less its rollout %v\n",
			r.bin, msList(r.first), msList(r.rollout), msList(over))
		fmt.Fprintf(w, "%s: a plain rollout of the same Deployment in the same round (the app alone restarted, update to the status reporting it done, no tether) %v\n",
			r.bin, msList(r.plain))
		fmt.Fprintf(w, "%s: from the new pods ready to the return %v; re-intercepts %v\n", r.bin, msList(r.afterRollout), msList(r.again))
		if len(r.proxied) > 0 {
			fmt.Fprintf(w, "%s: kube-proxy applied the last endpoint change %v after the rollout's end; the intercept returned %v after that\n",
				r.bin, msList(r.proxied), msList(r.returnAfterProxied))
		}
		for i, l := range r.proxyLines {
			fmt.Fprintf(w, "  round %d: %s\n", i+1, l)
		}
	}
	fmt.Fprintln(w, "goals (issue 13 item 3): first intercept <= rollout + 500ms (\"intercept less rollout\"); re-intercept <= 100ms")
	fmt.Fprintln(w, "(the rollout ends when every new pod is Ready, not at the Deployment's status, which a pinned rollout holds until tether lets the old pods go)")
}

func ms(d time.Duration) string { return fmt.Sprintf("%dms", d.Milliseconds()) }

func msList(ds []time.Duration) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = ms(d)
	}
	return out
}

func minDuration(ds []time.Duration) time.Duration {
	m := ds[0]
	for _, d := range ds {
		m = min(m, d)
	}
	return m
}

func maxDuration(ds []time.Duration) time.Duration {
	m := ds[0]
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}

// loadAvg is the machine's load average (1, 5, 15 min), or "?".
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
