// Command bench measures tether's data paths on the local cluster and prints
// every figure as a ratio against a baseline measured in the same run: the
// raw client-go port-forward to the same pod, the path every tool of this
// kind shares. `make bench` runs it.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"text/tabwriter"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tetherkube/tether/integration/cluster"
	"github.com/tetherkube/tether/internal/agentspec"
)

type options struct {
	tetherBin  string
	kubeconfig string
	namespace  string
	requests   int
	bulkBytes  int64
	rounds     int
	only       string
	agentImage string
	profileDir string
	pinAgents  bool
	// agentCPU is the CPU limit the personal rows' agents run under
	// (cores; 0: none).
	agentCPU float64
	// laptopSched: the scheduling of the personal rows' laptop end
	// (laptopend.go), idle or normal.
	laptopSched string
	// mirrorRate is the personal rows' mirror rate, requests/s (issue 12
	// asks for 5,000).
	mirrorRate int
	// compare is another tether binary the ready rows measure alongside,
	// interleaved; replicas is the ready rows' workload's.
	compare, compareAgentImage string
	replicas                   int
	// logs: keep the ready rows' daemon folders (their logs), and say where.
	logs string
	// modes, modeReplicas and tetherB shape the modes rows (modes.go).
	modes        string
	modeReplicas int
	tetherB      string
	modeSettle   time.Duration
}

func main() {
	o := options{}
	flag.StringVar(&o.tetherBin, "tether", "bin/tether", "the tether binary to measure")
	flag.StringVar(&o.kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig of the cluster to measure")
	flag.StringVar(&o.namespace, "namespace", "tether-bench", "namespace to deploy the orders app in (deleted afterwards)")
	flag.IntVar(&o.requests, "requests", 1000, "sequential requests per latency measurement")
	flag.Int64Var(&o.bulkBytes, "bulk-bytes", 128<<20, "bytes per throughput measurement")
	flag.IntVar(&o.rounds, "rounds", 5, "interleaved rounds per path; the table shows medians")
	flag.StringVar(&o.only, "only", "", "run one part only: intercept, inspect, record, run, personal, session (sessions and reproduce) cost (the agent's cost to in-cluster callers), modes (sidecar against --no-restart) or ready (first intercept against the rollout's end, re-intercept; -compare) (default: all but cost and modes)")
	flag.StringVar(&o.agentImage, "agent-image", "", "the agent image `tether run` and `tether intercept` add (default: tether's own)")
	flag.StringVar(&o.profileDir, "profile-dir", "", "write CPU, block and mutex profiles of the daemon, `tether run` and the agents under the latency and bulk rows here (`make bench PROFILE=1`)")
	flag.BoolVar(&o.pinAgents, "pin-agents", false, "personal: run the agents on the last CPU and the load, app and laptop on the others (Linux)")
	agentCPU := flag.String("agent-cpu", agentspec.DefaultCPULimit, "personal: the CPU limit each agent runs under (a cgroup CFS quota, as the kubelet sets a container's limit; Linux, as root); 0 for none")
	flag.IntVar(&o.mirrorRate, "mirror-rate", 5000, "personal: the rate of the mirror rows, requests/s (issue 12's target is 5,000; a lower rate compares agents' CPU per copy on a machine too busy for 5,000)")
	flag.StringVar(&o.laptopSched, "laptop-sched", "idle", "personal: how the laptop's end (its server and the daemon's end of the tunnels, a process of its own) is scheduled: idle (SCHED_IDLE: only the CPU the load, app and agents leave, as a laptop's own CPU would take none of theirs) or normal")
	flag.StringVar(&o.compare, "compare", "", "ready: another tether binary (e.g. main's) to time alongside -tether, interleaved round by round")
	flag.StringVar(&o.compareAgentImage, "compare-agent-image", "", "ready: the agent image -compare adds (default: -agent-image)")
	flag.StringVar(&o.logs, "keep-logs", "", "ready: keep the daemons' folders (with their logs) and print where (any value)")
	flag.IntVar(&o.replicas, "replicas", 2, "ready: the workload's replicas")
	flag.StringVar(&o.modes, "modes", "sidecar,no-restart", "modes: the intercept modes to measure, comma-separated")
	flag.IntVar(&o.modeReplicas, "mode-replicas", 3, "modes: the replicas of the workload")
	flag.DurationVar(&o.modeSettle, "mode-settle", 0, "modes: how long the workload's pods run, ready, before the first intercept (a developer's have run for minutes; the kubelet syncs a pod that just started more often)")
	flag.StringVar(&o.tetherB, "tether-b", "", "modes: a second tether binary, measured in the same rounds as -tether (rows marked B), e.g. a build of main against a branch")
	laptopEndRole := flag.Bool("laptop-end", false, "(internal) run as the personal rows' laptop end, spoken to on stdin and stdout")
	relayRole := flag.String("relay", "", "(internal) LISTEN,TARGET: run as the plain relay of the hop rows (relay.go)")
	flag.Parse()
	if *relayRole != "" {
		if err := relayMain(*relayRole); err != nil {
			fmt.Fprintln(os.Stderr, "bench -relay:", err)
			os.Exit(1)
		}
		return
	}
	if *laptopEndRole {
		if err := laptopEnd(); err != nil {
			fmt.Fprintln(os.Stderr, "bench -laptop-end:", err)
			os.Exit(1)
		}
		return
	}
	if o.laptopSched != "idle" && o.laptopSched != "normal" {
		fmt.Fprintf(os.Stderr, "bench: -laptop-sched %q: want idle or normal\n", o.laptopSched)
		os.Exit(2)
	}
	if q, err := resource.ParseQuantity(*agentCPU); err != nil || q.Sign() < 0 {
		fmt.Fprintf(os.Stderr, "bench: -agent-cpu %q: want a CPU quantity such as 500m or 2, or 0 for no limit\n", *agentCPU)
		os.Exit(2)
	} else {
		o.agentCPU = float64(q.MilliValue()) / 1000
	}
	if o.kubeconfig == "" {
		o.kubeconfig = cluster.DefaultConfig(mustAbs(".cluster")).KubeconfigPath()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func mustAbs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		panic(err)
	}
	return a
}

// row is one measured path.
type row struct {
	name      string
	p50, p99  time.Duration
	mbPerSec  float64
	requests  int
	bulkBytes int64
}

func run(ctx context.Context, o options) error {
	if o.only == "personal" {
		// The agent binary on this machine, no cluster needed.
		pr, err := measurePersonal(ctx, o)
		if err != nil {
			return fmt.Errorf("personal intercepts: %w", err)
		}
		printPersonal(os.Stdout, pr)
		return nil
	}
	rc, err := clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	defer func() {
		_ = cs.CoreV1().Namespaces().Delete(context.Background(), o.namespace, metav1.DeleteOptions{})
	}()
	if _, err := deploy(ctx, cs, o.namespace); err != nil {
		return err
	}
	if o.only == "session" {
		sr, err := measureSession(ctx, cs, o)
		if err != nil {
			return fmt.Errorf("session: %w", err)
		}
		printSession(os.Stdout, sr, o.rounds)
		rp, err := measureReproduce(ctx, cs, o)
		if err != nil {
			return fmt.Errorf("reproduce: %w", err)
		}
		printReproduce(os.Stdout, rp, o.rounds)
		return nil
	}
	if o.only == "record" {
		client, err := startClient(ctx, cs, o.namespace)
		if err != nil {
			return err
		}
		return benchRecording(ctx, rc, cs, o, client)
	}
	if o.only == "modes" {
		mr, err := measureModes(ctx, rc, cs, o)
		if err != nil {
			return fmt.Errorf("intercept modes: %w", err)
		}
		printModes(os.Stdout, mr, o)
		return nil
	}
	if o.only == "ready" {
		rr, err := measureReady(ctx, rc, cs, o)
		if err != nil {
			return fmt.Errorf("intercept readiness: %w", err)
		}
		printReady(os.Stdout, rr, o)
		return nil
	}
	if o.only == "cost" {
		cr, err := measureCost(ctx, rc, cs, o)
		if err != nil {
			return fmt.Errorf("the agent's cost: %w", err)
		}
		printCost(os.Stdout, cr, o.rounds)
		return nil
	}
	if o.only == "run" {
		rr, err := measureRun(ctx, rc, cs, o)
		if err != nil {
			return fmt.Errorf("run: %w", err)
		}
		printRun(os.Stdout, rr, o)
		return nil
	}
	if o.only == "inspect" {
		client, err := startClient(ctx, cs, o.namespace)
		if err != nil {
			return err
		}
		ir, err := measureInspect(ctx, rc, cs, o, client)
		if err != nil {
			return fmt.Errorf("inspect: %w", err)
		}
		printInspect(os.Stdout, ir)
		return nil
	}
	fmt.Fprintf(os.Stderr, "measuring in namespace %s: %d rounds of %d requests and %d MiB per path\n",
		o.namespace, o.rounds, o.requests, o.bulkBytes>>20)
	tr, err := measureTether(ctx, rc, cs, o, mustAbs(".cluster"))
	if err != nil {
		return err
	}
	// What tether adds: the intercepted path less the in-cluster Service hop
	// every caller pays (derived from two rows of this run).
	rows := []row{tr.baseline}
	for _, path := range tunnelPaths {
		i := tr.intercepted[path]
		rows = append(rows, i, row{name: "  " + path + ": intercepted less the in-cluster hop (derived)",
			p50: i.p50 - tr.inCluster.p50, p99: i.p99 - tr.inCluster.p99, mbPerSec: i.mbPerSec})
	}
	rows = append(rows, tr.direct, tr.inCluster, tr.podToPod, tr.agentHop, tr.laptopHop)
	fmt.Printf("== data path: medians of %d interleaved rounds; latency of sequential requests on one connection, bulk download (the hop rows: latency only)\n", o.rounds)
	print(os.Stdout, tr.baseline, rows)
	d := tr.intercepted["direct"]
	fmt.Printf("direct path p50 against pod -> pod: %.2fx (target <= 2x, issue 13); against the raw port-forward: %.2fx\n",
		ratio(d.p50, tr.podToPod.p50), ratio(d.p50, tr.baseline.p50))
	// The two relays alone (relay.go): each hop row less the pod -> pod
	// request it contains, added to one pod -> pod request.
	hops := tr.agentHop.p50 + tr.laptopHop.p50 - tr.podToPod.p50
	fmt.Printf("the two hops alone (agent's hop + laptop's hop - pod -> pod, derived): %s, %.2fx pod -> pod; the direct tunnel's own share: %s\n",
		hops.Round(time.Microsecond), ratio(hops, tr.podToPod.p50), (d.p50 - hops).Round(time.Microsecond))

	fmt.Println("\n== time to be ready")
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "step\ttime\tratio to baseline\t")
	for _, t := range []timing{
		{"API round trip, GET /version (baseline)", tr.apiRoundTrip},
		{"tether connect (starts the daemon)", tr.connect},
		{"tether intercept, command to return", tr.intercept},
		{"  of which the agent rollout", tr.rollout},
		{"intercept: command to first request served by the laptop", tr.firstServed},
	} {
		fmt.Fprintf(tw, "%s\t%s\t%.1fx\t\n", t.name, t.d.Round(time.Millisecond), float64(t.d)/float64(tr.apiRoundTrip))
	}
	tw.Flush()

	fmt.Println("\n== agent footprint")
	tw = tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "what\tagent\tbaseline: orders demo app\tratio\ttarget\t")
	for _, m := range []struct {
		what       string
		agent, app int64
		target     string
	}{
		{"idle working set (RSS + active file pages)", tr.agentRSS.workingSet, tr.appRSS.workingSet, "< 15 MiB"},
		{"working set after the latency and bulk rows", tr.agentRSSAfterLoad.workingSet, tr.appRSS.workingSet, ""},
	} {
		fmt.Fprintf(tw, "%s\t%.1f MiB\t%.1f MiB\t%.2fx\t%s\t\n", m.what, mib(m.agent), mib(m.app), float64(m.agent)/float64(m.app), m.target)
	}
	fmt.Fprintf(tw, "image (compressed tarball)\t%.1f MB\t%.1f MB\t%.2fx\t< 15 MB\t\n", float64(tr.agentImage)/1e6, float64(tr.demoImage)/1e6, float64(tr.agentImage)/float64(tr.demoImage))
	tw.Flush()
	if tr.profiles != "" {
		fmt.Printf("\nprofiles (CPU, block, mutex, heap of the daemon and of each agent, agent-POD.*, under the intercepted rows): %s\n", tr.profiles)
	}
	if o.only == "intercept" {
		return nil
	}

	ir, err := measureInspect(ctx, rc, cs, o, tr.client)
	if err != nil {
		return fmt.Errorf("inspect: %w", err)
	}
	printInspect(os.Stdout, ir)
	if err := benchRecording(ctx, rc, cs, o, tr.client); err != nil {
		return err
	}
	rr, err := measureRun(ctx, rc, cs, o)
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	printRun(os.Stdout, rr, o)
	sr, err := measureSession(ctx, cs, o)
	if err != nil {
		return fmt.Errorf("session: %w", err)
	}
	printSession(os.Stdout, sr, o.rounds)
	rp, err := measureReproduce(ctx, cs, o)
	if err != nil {
		return fmt.Errorf("reproduce: %w", err)
	}
	printReproduce(os.Stdout, rp, o.rounds)
	return nil
}

func benchRecording(ctx context.Context, rc *rest.Config, cs *kubernetes.Clientset, o options, client string) error {
	rr, err := measureRecording(ctx, o)
	if err != nil {
		return fmt.Errorf("recording: %w", err)
	}
	if err := measureFullBuffer(ctx, rc, cs, o, client, &rr); err != nil {
		return fmt.Errorf("full buffer: %w", err)
	}
	printRecording(os.Stdout, rr)
	return nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func deploy(ctx context.Context, cs *kubernetes.Clientset, ns string) (*corev1.Pod, error) {
	_ = cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		return err == nil, nil
	})
	if err != nil {
		return nil, fmt.Errorf("create namespace %s: %w", ns, err)
	}
	if err := createOrders(ctx, cs, ns, "orders"); err != nil {
		return nil, err
	}
	var ready *corev1.Pod
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=orders"})
		if err != nil {
			return false, nil
		}
		for i, p := range pods.Items {
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					ready = &pods.Items[i]
					return true, nil
				}
			}
		}
		return false, nil
	})
	if err != nil {
		return nil, fmt.Errorf("orders pod not ready: %w", err)
	}
	return ready, nil
}

// createOrders creates the orders demo app (its Deployment and Service)
// in ns under name, with no memory limit: the bench measures the path,
// not a limit. One already there is left as it is.
func createOrders(ctx context.Context, cs *kubernetes.Clientset, ns, name string) error {
	raw, err := os.ReadFile("integration/manifests/orders.yaml")
	if err != nil {
		return err
	}
	labels := func() map[string]string { return map[string]string{"app": name} }
	for _, doc := range bytes.Split(raw, []byte("\n---\n")) {
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			return err
		}
		switch v := obj.(type) {
		case *appsv1.Deployment:
			v.Name, v.Labels = name, labels()
			v.Spec.Selector.MatchLabels, v.Spec.Template.Labels = labels(), labels()
			v.Spec.Template.Spec.Containers[0].Resources.Limits = nil
			_, err = cs.AppsV1().Deployments(ns).Create(ctx, v, metav1.CreateOptions{})
		case *corev1.Service:
			v.Name, v.Labels, v.Spec.Selector = name, labels(), labels()
			_, err = cs.CoreV1().Services(ns).Create(ctx, v, metav1.CreateOptions{})
		}
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

// measure sends o.requests sequential GETs over one keep-alive connection,
// then downloads o.bulkBytes.
func measure(ctx context.Context, name, base string, o options) (row, error) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}, Timeout: 5 * time.Minute}
	get := func(path string) (int64, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		if err != nil {
			return 0, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		n, err := io.Copy(io.Discard, resp.Body)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("GET %s: %s", path, resp.Status)
		}
		return n, err
	}
	for range 50 { // warm up the connection and both ends
		if _, err := get("/orders/7"); err != nil {
			return row{}, fmt.Errorf("%s: %w", name, err)
		}
	}
	lat := make([]time.Duration, o.requests)
	for i := range lat {
		t0 := time.Now()
		if _, err := get("/orders/7"); err != nil {
			return row{}, fmt.Errorf("%s: %w", name, err)
		}
		lat[i] = time.Since(t0)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t0 := time.Now()
	n, err := get(fmt.Sprintf("/bytes?n=%d", o.bulkBytes))
	if err != nil {
		return row{}, fmt.Errorf("%s bulk: %w", name, err)
	}
	if n != o.bulkBytes {
		return row{}, fmt.Errorf("%s bulk: got %d bytes, want %d", name, n, o.bulkBytes)
	}
	secs := time.Since(t0).Seconds()
	return row{
		name: name, requests: o.requests, bulkBytes: n,
		p50: lat[len(lat)/2], p99: lat[len(lat)*99/100],
		mbPerSec: float64(n) / (1 << 20) / secs,
	}, nil
}

func print(w io.Writer, base row, rows []row) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "path\tp50\tp50 ratio\tp99\tp99 ratio\tMiB/s\tthroughput ratio\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%.2fx\t%s\t%.2fx\t%.1f\t%.2fx\t\n",
			r.name, r.p50.Round(time.Microsecond), ratio(r.p50, base.p50),
			r.p99.Round(time.Microsecond), ratio(r.p99, base.p99),
			r.mbPerSec, r.mbPerSec/base.mbPerSec)
	}
	tw.Flush()
	fmt.Fprintln(w, "ratios are against the baseline row, measured in this run: latency ratio < 1 and throughput ratio > 1 are faster")
}

func ratio(a, b time.Duration) float64 { return float64(a) / float64(b) }
