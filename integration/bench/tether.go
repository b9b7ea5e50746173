package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/tetherkube/tether/integration/cluster"
	"github.com/tetherkube/tether/integration/demoapp"
)

// tetherCLI runs the tether binary with its own daemon folder.
type tetherCLI struct {
	bin, kubeconfig, namespace, runtimeDir string
}

func (c tetherCLI) cmd(ctx context.Context, args ...string) *exec.Cmd {
	args = append(args, "--kubeconfig", c.kubeconfig, "-n", c.namespace)
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+c.runtimeDir)
	return cmd
}

func (c tetherCLI) run(ctx context.Context, args ...string) (string, error) {
	out, err := c.cmd(ctx, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("tether %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// timing is a duration measured once, with its baseline.
type timing struct {
	name string
	d    time.Duration
}

// tetherResults is what the tether rows measured.
type tetherResults struct {
	apiRoundTrip, connect, intercept, rollout, firstServed time.Duration
	// Medians over o.rounds interleaved rounds.
	baseline, direct, inCluster, podToPod row
	// agentHop and laptopHop are the hop rows (relay.go), latency only.
	agentHop, laptopHop row
	// intercepted is the intercepted row for each path (tunnelPaths).
	intercepted                         map[string]row
	agentRSS, appRSS, agentRSSAfterLoad memory
	agentImage, demoImage               int64
	// client is the pod the requests come from.
	client string
	// profiles is the folder of the intercept's profiles, when asked.
	profiles string
}

// tunnelPaths are the paths the intercepted rows are measured over.
var tunnelPaths = []string{"port-forward", "direct"}

// measureTether measures connect, intercept, the intercepted data path and
// the agent's footprint, through the tether CLI as a user runs it.
func measureTether(ctx context.Context, rc *rest.Config, cs *kubernetes.Clientset, o options, clusterDir string) (tetherResults, error) {
	var r tetherResults
	runtimeDir, err := os.MkdirTemp("", "tb")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(runtimeDir)
	cli := tetherCLI{bin: o.tetherBin, kubeconfig: o.kubeconfig, namespace: o.namespace, runtimeDir: runtimeDir}
	defer cli.run(context.Background(), "quit")

	t0 := time.Now()
	if _, err := cs.Discovery().ServerVersion(); err != nil {
		return r, err
	}
	r.apiRoundTrip = time.Since(t0)
	t0 = time.Now()
	if _, err := cli.run(ctx, "connect"); err != nil {
		return r, err
	}
	r.connect = time.Since(t0)

	client, err := startClient(ctx, cs, o.namespace)
	if err != nil {
		return r, err
	}
	r.client = client
	base := "http://orders." + o.namespace + ".svc.cluster.local"
	var inCluster []row
	for range o.rounds {
		m, err := podMeasure(ctx, rc, o, client, base)
		if err != nil {
			return r, err
		}
		inCluster = append(inCluster, m)
	}
	r.inCluster = median("pod -> Service -> app, no tether (reference)", inCluster)

	// The laptop side: the orders app itself, in this process.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return r, err
	}
	srv := &http.Server{Handler: demoapp.NewServer("laptop").Handler()}
	go srv.Serve(l)
	defer srv.Close()

	t0 = time.Now()
	interceptArgs := []string{"intercept", "orders", "--port", "http:" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port)}
	if o.agentImage != "" {
		interceptArgs = append(interceptArgs, "--agent-image", o.agentImage)
	}
	cmd := cli.cmd(ctx, interceptArgs...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return r, err
	}
	if err := cmd.Start(); err != nil {
		return r, err
	}
	var rolloutStart, rolloutEnd time.Time
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "adding the agent"):
			rolloutStart = time.Now()
		case rolloutEnd.IsZero() && !rolloutStart.IsZero() && !strings.HasPrefix(line, "waiting for") && !strings.HasPrefix(line, "adding"):
			rolloutEnd = time.Now()
		case rolloutEnd.IsZero() && strings.HasPrefix(line, "waiting for service/"):
			rolloutEnd = time.Now()
		}
	}
	if err := cmd.Wait(); err != nil {
		return r, fmt.Errorf("intercept: %w", err)
	}
	r.intercept = time.Since(t0)
	if !rolloutStart.IsZero() && !rolloutEnd.IsZero() {
		r.rollout = rolloutEnd.Sub(rolloutStart)
	}
	for {
		out, err := cluster.Exec(ctx, rc, o.namespace, client, "/tether-demo", "get", base+"/whoami")
		if err == nil && strings.Contains(out, "X-Served-By: laptop") {
			break
		}
		if time.Since(t0) > 2*time.Minute {
			return r, fmt.Errorf("no request served by the laptop 2 minutes after the intercept started: %s", out)
		}
	}
	r.firstServed = time.Since(t0)
	time.Sleep(10 * time.Second) // let the kubelet's stats catch up with the new pod
	r.agentRSS, r.appRSS, err = containerRSS(ctx, cs, o.namespace)
	if err != nil {
		return r, err
	}

	// Baseline, direct and intercepted, interleaved round by round so that
	// the machine's load falls on all alike; the baseline port-forward goes
	// to the same pod's app port, past the agent.
	pod, err := agentPod(ctx, cs, o.namespace)
	if err != nil {
		return r, err
	}
	pfAddr, stop, err := cluster.ForwardPort(ctx, rc, o.namespace, pod.Name, 8080)
	if err != nil {
		return r, err
	}
	defer stop()
	laptopPort := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	relayAddr, stopRelay, err := startRelay(ctx, pod.Status.PodIP, l.Addr().String())
	if err != nil {
		return r, fmt.Errorf("the plain relay of the laptop's hop: %w", err)
	}
	defer stopRelay()
	agentPort, err := agentListenPort(pod)
	if err != nil {
		return r, err
	}
	// reintercept leaves and intercepts again over path (the agent is in
	// place: nothing restarts), and checks the path and that the laptop
	// answers. whileLeft, when set, runs while nothing is intercepted.
	reintercept := func(path string, whileLeft func() error) error {
		if _, err := cli.run(ctx, "leave", "orders"); err != nil {
			return err
		}
		if whileLeft != nil {
			if err := whileLeft(); err != nil {
				return err
			}
		}
		out, err := cli.cmd(ctx, "intercept", "orders", "--port", "http:"+laptopPort, "--path", path, "-o", "json").Output()
		if err != nil {
			return fmt.Errorf("intercept --path %s: %w", path, err)
		}
		var info struct{ Paths map[string]string }
		if err := json.Unmarshal(out, &info); err != nil {
			return fmt.Errorf("intercept --path %s: %w: %s", path, err, out)
		}
		for pod, got := range info.Paths {
			if got != path {
				return fmt.Errorf("intercept --path %s: pod %s took %s", path, pod, got)
			}
		}
		got, err := cluster.Exec(ctx, rc, o.namespace, client, "/tether-demo", "get", base+"/whoami")
		if err != nil || !strings.Contains(got, "X-Served-By: laptop") {
			return fmt.Errorf("intercept --path %s: not served by the laptop: %v %s", path, err, got)
		}
		return nil
	}
	var baseline, direct, podToPod, agentHop, laptopHop []row
	intercepted := map[string][]row{}
	measureAgentHop := func() error {
		ah, err := podLatency(ctx, rc, o, client, "http://"+net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(agentPort)))
		if err != nil {
			return fmt.Errorf("the agent's hop: %w", err)
		}
		agentHop = append(agentHop, ah)
		return nil
	}
	for range o.rounds {
		b, err := measure(ctx, "raw port-forward", "http://"+pfAddr, o)
		if err != nil {
			return r, err
		}
		d, err := measure(ctx, "direct", "http://"+pod.Status.PodIP+":8080", o)
		if err != nil {
			return r, err
		}
		pp, err := podMeasure(ctx, rc, o, client, "http://"+pod.Status.PodIP+":8080")
		if err != nil {
			return r, fmt.Errorf("pod to pod: %w", err)
		}
		lh, err := podLatency(ctx, rc, o, client, "http://"+relayAddr)
		if err != nil {
			return r, fmt.Errorf("the laptop's hop: %w", err)
		}
		baseline, direct, podToPod, laptopHop = append(baseline, b), append(direct, d), append(podToPod, pp), append(laptopHop, lh)
		for i, path := range tunnelPaths {
			var whileLeft func() error
			if i == 0 {
				whileLeft = measureAgentHop
			}
			if err := reintercept(path, whileLeft); err != nil {
				return r, err
			}
			i, err := podMeasure(ctx, rc, o, client, base)
			if err != nil {
				return r, fmt.Errorf("intercepted over %s: %w", path, err)
			}
			intercepted[path] = append(intercepted[path], i)
		}
	}
	r.baseline = median("raw client-go port-forward to the pod (baseline)", baseline)
	r.direct = median("host -> pod IP, no API server", direct)
	r.podToPod = median("pod -> pod IP, no Service, no tether (reference)", podToPod)
	r.agentHop = median("the agent's hop: pod -> agent -> app, nothing intercepted (reference)", agentHop)
	r.laptopHop = median("the laptop's hop: pod -> plain relay on this machine -> laptop (reference)", laptopHop)
	r.intercepted = map[string]row{}
	for _, path := range tunnelPaths {
		r.intercepted[path] = median("intercepted over "+path+": pod -> Service -> agent -> tunnel -> laptop", intercepted[path])
	}
	if _, err := cli.run(ctx, "leave", "orders"); err != nil {
		return r, err
	}
	time.Sleep(10 * time.Second) // the stats are sampled every few seconds
	r.agentRSSAfterLoad, _, err = containerRSS(ctx, cs, o.namespace)
	if err != nil {
		return r, err
	}
	if o.profileDir != "" {
		if r.profiles, err = profileIntercept(ctx, rc, o, cli, client, base, interceptArgs); err != nil {
			return r, fmt.Errorf("profile the intercept: %w", err)
		}
	}
	r.agentImage = fileSize(filepath.Join(clusterDir, "images", "tether-agent.tar"))
	r.demoImage = fileSize(filepath.Join(clusterDir, "images", "tether-demo.tar"))
	if _, err := cli.run(ctx, "rollback", "orders"); err != nil {
		return r, err
	}
	return r, nil
}

// profileIntercept runs the intercepted rows once more under a fresh
// daemon with TETHER_PROFILE_DIR, then quits it, so that it writes its
// own profiles and its agents' (agent-POD.*) in PROFILEDIR/intercept. The
// timed rows ran unprofiled.
func profileIntercept(ctx context.Context, rc *rest.Config, o options, cli tetherCLI, client, base string, interceptArgs []string) (string, error) {
	dir, err := filepath.Abs(filepath.Join(o.profileDir, "intercept"))
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	profiled := func(args ...string) error {
		c := cli.cmd(ctx, args...)
		c.Env = append(c.Env, "TETHER_PROFILE_DIR="+dir)
		if out, err := c.CombinedOutput(); err != nil {
			return fmt.Errorf("tether %s: %w: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if _, err := cli.run(ctx, "quit"); err != nil {
		return "", err
	}
	if err := profiled(interceptArgs...); err != nil {
		return "", err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		out, err := cluster.Exec(ctx, rc, o.namespace, client, "/tether-demo", "get", base+"/whoami")
		if err == nil && strings.Contains(out, "X-Served-By: laptop") {
			break
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no request served by the laptop 2 minutes after the intercept started: %s", out)
		}
	}
	if _, err := podMeasure(ctx, rc, o, client, base); err != nil {
		return "", err
	}
	return dir, profiled("quit")
}

// podMeasure measures latency and bulk throughput from the client pod to base.
func podMeasure(ctx context.Context, rc *rest.Config, o options, client, base string) (row, error) {
	out, err := cluster.Exec(ctx, rc, o.namespace, client, "/tether-demo", "latency", base+"/orders/7", strconv.Itoa(o.requests))
	if err != nil {
		return row{}, fmt.Errorf("latency from a pod: %w: %s", err, out)
	}
	var r row
	r.p50, r.p99 = parseLatency(out)
	out, err = cluster.Exec(ctx, rc, o.namespace, client, "/tether-demo", "throughput", fmt.Sprintf("%s/bytes?n=%d", base, o.bulkBytes))
	if err != nil {
		return row{}, fmt.Errorf("throughput from a pod: %w: %s", err, out)
	}
	if m := regexp.MustCompile(`mib_per_s ([\d.]+)`).FindStringSubmatch(out); m != nil {
		r.mbPerSec, _ = strconv.ParseFloat(m[1], 64)
	}
	return r, nil
}

// median takes each figure's median over rows.
func median(name string, rows []row) row {
	p50s, p99s, mbs := make([]time.Duration, len(rows)), make([]time.Duration, len(rows)), make([]float64, len(rows))
	for i, r := range rows {
		p50s[i], p99s[i], mbs[i] = r.p50, r.p99, r.mbPerSec
	}
	slices.Sort(p50s)
	slices.Sort(p99s)
	slices.Sort(mbs)
	m := len(rows) / 2
	return row{name: name, p50: p50s[m], p99: p99s[m], mbPerSec: mbs[m]}
}

// agentPod returns a running orders pod whose agent is ready.
func agentPod(ctx context.Context, cs *kubernetes.Clientset, ns string) (*corev1.Pod, error) {
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=orders"})
	if err != nil {
		return nil, err
	}
	for i, p := range pods.Items {
		if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
			continue
		}
		for _, c := range p.Status.ContainerStatuses {
			if c.Name == "tether-agent" && c.Ready {
				return &pods.Items[i], nil
			}
		}
	}
	return nil, fmt.Errorf("no orders pod with a ready agent")
}

func parseLatency(out string) (time.Duration, time.Duration) {
	m := regexp.MustCompile(`p50_us (\d+) p99_us (\d+)`).FindStringSubmatch(out)
	if m == nil {
		return 0, 0
	}
	p50, _ := strconv.Atoi(m[1])
	p99, _ := strconv.Atoi(m[2])
	return time.Duration(p50) * time.Microsecond, time.Duration(p99) * time.Microsecond
}

func fileSize(p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return st.Size()
}

// startClient runs a long-lived client pod to send requests from.
func startClient(ctx context.Context, cs *kubernetes.Clientset, ns string) (string, error) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "bench-client"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "client", Image: cluster.DemoImage, ImagePullPolicy: corev1.PullNever, Args: []string{"sleep"},
		}}},
	}
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return "", err
	}
	for start := time.Now(); time.Since(start) < 2*time.Minute; time.Sleep(300 * time.Millisecond) {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err == nil && p.Status.Phase == corev1.PodRunning {
			return pod.Name, nil
		}
	}
	return "", fmt.Errorf("client pod not running")
}

// memory is one container's memory as the kubelet reports it: RSS is
// anonymous memory; the working set adds the active file pages (the binary).
type memory struct{ rss, workingSet int64 }

// containerRSS reads the agent's and the app's memory from the kubelet's
// stats summary, waiting until it has figures for both.
func containerRSS(ctx context.Context, cs *kubernetes.Clientset, ns string) (agent, app memory, err error) {
	for start := time.Now(); time.Since(start) < time.Minute; time.Sleep(2 * time.Second) {
		agent, app, err = readStats(ctx, cs, ns)
		if err == nil && agent.workingSet > 0 && app.workingSet > 0 {
			return agent, app, nil
		}
	}
	if err == nil {
		err = fmt.Errorf("the kubelet's stats have no memory figures for the agent and the app")
	}
	return agent, app, err
}

func readStats(ctx context.Context, cs *kubernetes.Clientset, ns string) (agent, app memory, err error) {
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil || len(nodes.Items) == 0 {
		return agent, app, fmt.Errorf("list nodes: %v", err)
	}
	raw, err := cs.CoreV1().RESTClient().Get().Resource("nodes").Name(nodes.Items[0].Name).SubResource("proxy", "stats", "summary").DoRaw(ctx)
	if err != nil {
		return agent, app, fmt.Errorf("kubelet stats: %w", err)
	}
	var summary struct {
		Pods []struct {
			PodRef     struct{ Name, Namespace string }
			Containers []struct {
				Name   string
				Memory struct {
					RSSBytes        int64 `json:"rssBytes"`
					WorkingSetBytes int64 `json:"workingSetBytes"`
				}
			}
		}
	}
	if err := json.Unmarshal(raw, &summary); err != nil {
		return agent, app, err
	}
	for _, p := range summary.Pods {
		if p.PodRef.Namespace != ns || !strings.HasPrefix(p.PodRef.Name, "orders-") {
			continue
		}
		for _, c := range p.Containers {
			m := memory{rss: c.Memory.RSSBytes, workingSet: c.Memory.WorkingSetBytes}
			switch c.Name {
			case "tether-agent":
				agent = m
			case "orders":
				app = m
			}
		}
	}
	return agent, app, nil
}
