package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// kubeProxyMetrics is where the local cluster's kube-proxy (inside k3s)
// serves its metrics; the bench runs on that node.
const kubeProxyMetrics = "http://127.0.0.1:10249/metrics"

// proxyWatch follows, during a first intercept, what decides when a new
// connection to the Service stops reaching a replaced pod: the Service's
// ready endpoints as the EndpointSlices list them, and kube-proxy's
// syncs, which apply them to this node's rules at most once a second
// after a burst of two (its minimum sync period).
type proxyWatch struct {
	mu sync.Mutex
	// changes: every change of the Service's EndpointSlices (watched),
	// with the addresses they list then.
	changes []readySet
	// syncs: kube-proxy's completed syncs, as its metrics report them
	// (kubeproxy_sync_proxy_rules_last_timestamp_seconds, polled).
	syncs []time.Time
	err   error
	done  chan struct{}
}

type readySet struct {
	at         time.Time
	ready, all []string // sorted addresses
}

// watchProxy starts following service ns/svc; stop ends it. It fails when
// kube-proxy's metrics cannot be read (not the local cluster's node).
func watchProxy(ctx context.Context, cs kubernetes.Interface, ns, svc string) (*proxyWatch, func(), error) {
	if _, err := lastSync(ctx); err != nil {
		return nil, nil, fmt.Errorf("kube-proxy's metrics: %w", err)
	}
	wctx, cancel := context.WithCancel(ctx)
	sel := discoveryv1.LabelServiceName + "=" + svc
	list, err := cs.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		cancel()
		return nil, nil, err
	}
	w, err := cs.DiscoveryV1().EndpointSlices(ns).Watch(wctx, metav1.ListOptions{LabelSelector: sel, ResourceVersion: list.ResourceVersion})
	if err != nil {
		cancel()
		return nil, nil, err
	}
	pw := &proxyWatch{done: make(chan struct{})}
	slicesNow := map[string]discoveryv1.EndpointSlice{}
	for _, s := range list.Items {
		slicesNow[s.Name] = s
	}
	ready, all := addrs(slicesNow)
	pw.changes = append(pw.changes, readySet{at: time.Now(), ready: ready, all: all})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for ev := range w.ResultChan() {
			s, ok := ev.Object.(*discoveryv1.EndpointSlice)
			if !ok {
				continue
			}
			if ev.Type == "DELETED" {
				delete(slicesNow, s.Name)
			} else {
				slicesNow[s.Name] = *s
			}
			ready, all := addrs(slicesNow)
			pw.mu.Lock()
			pw.changes = append(pw.changes, readySet{at: time.Now(), ready: ready, all: all})
			pw.mu.Unlock()
		}
	}()
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		var last time.Time
		for {
			select {
			case <-wctx.Done():
				return
			case <-tick.C:
			}
			t, err := lastSync(wctx)
			pw.mu.Lock()
			if err != nil && wctx.Err() == nil && pw.err == nil {
				pw.err = err
			}
			if err == nil && t.After(last) {
				last = t
				pw.syncs = append(pw.syncs, t)
			}
			pw.mu.Unlock()
		}
	}()
	stop := func() {
		cancel()
		wg.Wait()
	}
	return pw, stop, nil
}

// addrs lists the slices' ready addresses and all of them, sorted.
func addrs(byName map[string]discoveryv1.EndpointSlice) (ready, all []string) {
	for _, s := range byName {
		for _, e := range s.Endpoints {
			all = append(all, e.Addresses...)
			if e.Conditions.Ready != nil && *e.Conditions.Ready {
				ready = append(ready, e.Addresses...)
			}
		}
	}
	slices.Sort(ready)
	slices.Sort(all)
	return ready, all
}

// lastSync reads kube-proxy's last completed sync's time.
func lastSync(ctx context.Context) (time.Time, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, kubeProxyMetrics, nil)
	if err != nil {
		return time.Time{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return time.Time{}, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "kubeproxy_sync_proxy_rules_last_timestamp_seconds ")
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return time.Time{}, err
		}
		sec := int64(f)
		return time.Unix(sec, int64((f-float64(sec))*1e9)), nil
	}
	return time.Time{}, fmt.Errorf("no kubeproxy_sync_proxy_rules_last_timestamp_seconds in %s", kubeProxyMetrics)
}

// settled is when the Service's ready endpoints last changed (to the set
// they hold at the end), and applied the first kube-proxy sync completed
// after that: from then on this node's rules send nothing to a replaced
// pod. ok is false when either is not known.
func (pw *proxyWatch) settled() (last, applied time.Time, ok bool) {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	for i := len(pw.changes) - 1; i > 0; i-- {
		if !slices.Equal(pw.changes[i].ready, pw.changes[i-1].ready) {
			last = pw.changes[i].at
			break
		}
	}
	if last.IsZero() {
		return time.Time{}, time.Time{}, false
	}
	for _, s := range pw.syncs {
		if s.After(last) {
			return last, s, true
		}
	}
	return last, time.Time{}, false
}

// syncsAround lists kube-proxy's syncs from 2 s before t on, relative to t.
func (pw *proxyWatch) syncsAround(t time.Time) []string {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	var out []string
	for _, s := range pw.syncs {
		if s.After(t.Add(-2 * time.Second)) {
			out = append(out, fmt.Sprintf("%+dms", s.Sub(t).Milliseconds()))
		}
	}
	return out
}

// changesAround lists the slices' changes from 2 s before t on, relative
// to t, each with its ready and all addresses' numbers.
func (pw *proxyWatch) changesAround(t time.Time) []string {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	var out []string
	for _, c := range pw.changes[1:] {
		if c.at.After(t.Add(-2 * time.Second)) {
			out = append(out, fmt.Sprintf("%+dms:%d/%d", c.at.Sub(t).Milliseconds(), len(c.ready), len(c.all)))
		}
	}
	return out
}
