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

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"

	"github.com/tetherkube/tether/integration/cluster"
	"github.com/tetherkube/tether/integration/demoapp"
)

// modeResult is one intercept mode's figures (issue 13): a first
// intercept of a running workload, a re-intercept with the agents in
// place, the latency an in-cluster caller sees through the intercept to
// the laptop, and how many pods were replaced.
type modeResult struct {
	mode, label, bin   string
	first, again       []time.Duration
	through            []row
	replaced, restarts int
	// steps are the daemon's timeline of each first intercept, when its
	// log has one (intercept --no-restart).
	steps []startSteps
}

// measureModes measures the intercept modes o.modes asks for (with
// o.tetherB too, when set), o.rounds rounds of each, interleaved, on
// o.modeReplicas pods, the laptop a server in this process.
func measureModes(ctx context.Context, rc *rest.Config, cs *kubernetes.Clientset, o options) ([]modeResult, error) {
	lap, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: demoapp.NewServer("laptop").Handler()}
	go srv.Serve(lap)
	defer srv.Close()
	port := strconv.Itoa(lap.Addr().(*net.TCPAddr).Port)
	var out []modeResult
	for _, mode := range strings.Split(o.modes, ",") {
		if mode != "sidecar" && mode != "no-restart" {
			return nil, fmt.Errorf("-modes: %q is no mode (sidecar, no-restart)", mode)
		}
		out = append(out, modeResult{mode: mode, label: mode, bin: o.tetherBin})
		if o.tetherB != "" {
			out = append(out, modeResult{mode: mode, label: mode + " (B)", bin: o.tetherB})
		}
	}
	for range o.rounds {
		for i := range out {
			if err := out[i].round(ctx, rc, cs, o, port); err != nil {
				return out, fmt.Errorf("%s: %w", out[i].label, err)
			}
		}
	}
	return out, nil
}

func (r *modeResult) round(ctx context.Context, rc *rest.Config, cs *kubernetes.Clientset, o options, port string) error {
	ns := o.namespace + "-modes"
	mo := o
	mo.namespace = ns
	defer cs.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	if _, err := deploy(ctx, cs, ns); err != nil {
		return err
	}
	if err := scaleOrders(ctx, cs, ns, int32(o.modeReplicas)); err != nil {
		return err
	}
	client, err := startClient(ctx, cs, ns)
	if err != nil {
		return err
	}
	time.Sleep(o.modeSettle)
	runtimeDir, err := os.MkdirTemp("", "tb")
	if err != nil {
		return err
	}
	defer os.RemoveAll(runtimeDir)
	cli := tetherCLI{bin: r.bin, kubeconfig: o.kubeconfig, namespace: ns, runtimeDir: runtimeDir}
	defer cli.run(context.Background(), "quit")
	if _, err := cli.run(ctx, "connect"); err != nil { // the daemon up, as a developer's already is
		return err
	}
	before, err := podState(ctx, cs, ns)
	if err != nil {
		return err
	}
	args := []string{"intercept", "deploy/orders", "--port", "http:" + port}
	if r.mode == "no-restart" {
		args = append(args, "--no-restart")
	}
	if o.agentImage != "" {
		args = append(args, "--agent-image", o.agentImage)
	}
	t0 := time.Now()
	if _, err := cli.run(ctx, args...); err != nil {
		return err
	}
	r.first = append(r.first, time.Since(t0))
	if st, ok := lastStartSteps(ctx, cli); ok {
		st.total = r.first[len(r.first)-1]
		r.steps = append(r.steps, st)
		fmt.Fprintf(os.Stderr, "%s: first intercept %s; steps: %s\n", r.label, st.total.Round(time.Millisecond), st.text)
	}
	url := "http://orders." + ns + ".svc.cluster.local/orders/7"
	lat, err := cluster.Exec(ctx, rc, ns, client, "/tether-demo", "latency", url, fmt.Sprint(costRequests/2))
	if err != nil {
		return fmt.Errorf("latency through the intercept: %w: %s", err, lat)
	}
	var m row
	if m.p50, m.p99 = parseLatency(lat); m.p50 == 0 {
		return fmt.Errorf("latency through the intercept: %s", lat)
	}
	r.through = append(r.through, m)
	if _, err := cli.run(ctx, "leave", "deploy/orders"); err != nil {
		return err
	}
	t0 = time.Now()
	if _, err := cli.run(ctx, args...); err != nil {
		return err
	}
	r.again = append(r.again, time.Since(t0))
	after, err := podState(ctx, cs, ns)
	if err != nil {
		return err
	}
	for uid, restarts := range before {
		if a, ok := after[uid]; !ok {
			r.replaced++
		} else if a > restarts {
			r.restarts += int(a - restarts)
		}
	}
	if _, err := cli.run(ctx, "leave", "deploy/orders"); err != nil {
		return err
	}
	if r.mode == "no-restart" {
		return nil // leave restored the Service and the marks, and dropped the journal
	}
	_, err = cli.run(ctx, "rollback", "deploy/orders")
	return err
}

// podState maps the workload's pods' UIDs to their restart counts.
func podState(ctx context.Context, cs *kubernetes.Clientset, ns string) (map[string]int32, error) {
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=orders"})
	if err != nil {
		return nil, err
	}
	out := map[string]int32{}
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		var n int32
		for _, c := range p.Status.ContainerStatuses {
			n += c.RestartCount
		}
		out[string(p.UID)] = n
	}
	return out, nil
}

// scaleOrders scales deploy/orders to n ready replicas.
func scaleOrders(ctx context.Context, cs *kubernetes.Clientset, ns string, n int32) error {
	// The Deployment controller may update it meanwhile (just deployed).
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s, err := cs.AppsV1().Deployments(ns).GetScale(ctx, "orders", metav1.GetOptions{})
		if err != nil {
			return err
		}
		s.Spec.Replicas = n
		_, err = cs.AppsV1().Deployments(ns).UpdateScale(ctx, "orders", s, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return err
	}
	return wait.PollUntilContextTimeout(ctx, 300*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, "orders", metav1.GetOptions{})
		return err == nil && d.Status.ReadyReplicas == n && d.Status.UpdatedReplicas == n && d.Status.Replicas == n, nil
	})
}

func printModes(w io.Writer, rs []modeResult, o options) {
	fmt.Fprintf(w, "\n== intercept modes: %d replicas, medians of %d rounds (a fresh workload each, modes interleaved)\n", o.modeReplicas, o.rounds)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\tfirst intercept\t(each round)\tre-intercept\tin-cluster caller -> laptop p50\tp99\tpods replaced\trestarts\t")
	for _, r := range rs {
		var p50s, p99s []time.Duration
		for _, t := range r.through {
			p50s, p99s = append(p50s, t.p50), append(p99s, t.p99)
		}
		var each []string
		for _, d := range r.first {
			each = append(each, d.Round(10*time.Millisecond).String())
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t\n", r.label, medianDuration(r.first).Round(10*time.Millisecond), strings.Join(each, " "),
			medianDuration(r.again).Round(time.Millisecond), us(medianDuration(p50s)), us(medianDuration(p99s)), r.replaced, r.restarts)
	}
	tw.Flush()
	for _, r := range rs {
		if len(r.steps) > 0 {
			printSteps(w, r)
		}
	}
}
