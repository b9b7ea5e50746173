package intercept

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	coreinformers "k8s.io/client-go/informers/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/tetherkube/tether/daemon/internal/inspect"
	"github.com/tetherkube/tether/daemon/internal/workload"
)

// The follower watches the workload's pods (an informer: a watch, listed
// again when it breaks) and syncs whenever one changes, rather than
// listing them every second: a pod added by a scale up is joined as soon
// as it is ready, and an idle intercept costs the API server nothing.

const (
	// followResync lists the pods again in full this often, whatever the
	// watch said.
	followResync = 30 * time.Second
	// retryAfter is the wait before a sync that failed (a join that could
	// not reach its agent, an API error) is tried again.
	retryAfter = time.Second
	// rejoinAfter is the wait, once a pod's tunnel dropped, before the
	// sync that opens it again if the agent lives: the kubelet reports an
	// agent that died as terminated within about a second, and a pod
	// whose agent died gets no other.
	rejoinAfter = time.Second
)

// follow keeps following the workload's pods in the background until
// stop.
func (f *follower) follow(ctx context.Context) {
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	f.cancel, f.done = cancel, make(chan struct{})
	go func() {
		defer close(f.done)
		f.followPods(bg)
	}()
}

// followPods syncs the pods the workload selects whenever they change,
// until ctx ends.
func (f *follower) followPods(ctx context.Context) {
	var sel labels.Selector
	for sel == nil {
		s, err := workload.Client{CS: f.cs}.Selector(ctx, f.np.w) // immutable once the workload exists
		if err == nil {
			sel = s
			break
		}
		f.log.Warn("following pods (no restart): the workload's selector", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(retryAfter):
		}
	}
	inf := coreinformers.NewFilteredPodInformer(f.cs, f.np.w.Namespace, followResync, cache.Indexers{},
		func(o *metav1.ListOptions) { o.LabelSelector = sel.String() })
	poke := func(any) { f.poke() }
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: poke, DeleteFunc: poke, UpdateFunc: func(_, o any) { poke(o) },
	}); err != nil {
		f.log.Warn("following pods (no restart)", "err", err)
		return
	}
	go inf.Run(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return
	}
	lister := corelisters.NewPodLister(inf.GetIndexer())
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.changed:
		}
		list, err := lister.List(sel)
		if err == nil {
			err = f.sync(ctx, list)
		}
		if err != nil && ctx.Err() == nil {
			f.log.Warn("following pods (no restart)", "err", err)
			f.pokeAfter(retryAfter)
		}
	}
}

// poke wakes the follow loop.
func (f *follower) poke() {
	select {
	case f.changed <- struct{}{}:
	default: // a wake-up is pending already
	}
}

// pokeAfter wakes the follow loop after d.
func (f *follower) pokeAfter(d time.Duration) { time.AfterFunc(d, f.poke) }

// sync adds the agent to ready pods that have no tunnel, and drops the
// tunnels of pods gone. The pods are the informer's: read, never changed.
func (f *follower) sync(ctx context.Context, pods []*corev1.Pod) error {
	live := map[string]bool{}
	var todo []*corev1.Pod
	for _, p := range pods {
		if !podReady(p) || !ownedBy(p, f.np.w) {
			continue
		}
		live[p.Name] = true
		if f.t.link(p.Name) != nil {
			continue
		}
		if name, died := inspect.InterceptAgentDied(p); died {
			f.mu.Lock()
			told := f.dead[p.Name]
			f.dead[p.Name] = true
			f.mu.Unlock()
			if !told {
				f.log.Warn("the agent of a pod died; tether adds no other while this intercept runs, so the pod stays out of the Service",
					"pod", p.Name, "container", name)
			}
			continue
		}
		todo = append(todo, p)
	}
	f.t.mu.Lock()
	for name, l := range f.t.links {
		if !live[name] {
			l.Close()
			delete(f.t.links, name)
		}
	}
	f.t.mu.Unlock()
	if len(todo) == 0 {
		return nil
	}
	return f.joinAll(ctx, todo)
}
