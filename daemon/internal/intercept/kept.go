package intercept

import (
	"bytes"
	"sort"
	"sync"

	"k8s.io/apimachinery/pkg/types"

	"github.com/tetherkube/tether/agent"
)

// KeptLinks holds the tunnels a sidecar intercept leaves open when it
// ends, so that the next intercept of the same workload, with the agents
// still in place, asks each agent to intercept over the tunnel it has
// rather than dialing a port-forward, handshaking and checking readiness
// again (docs/intercept.md, "When is an intercept ready").
//
// A kept tunnel carries no intercept: the agent was asked to leave (it
// sends its port's connections to the app) before its tunnel was kept, and
// the agent drops an intercept with the tunnel that asked for it anyway. A
// kept tunnel is reused only for the same pod (name and UID) and the same
// token; it goes when it ends (the pod gone, the tunnel's dead-peer
// check), when the workload is rolled back (Drop) and when the daemon quits
// (Close). One per daemon; safe for concurrent use. The zero value holds
// nothing and is ready.
type KeptLinks struct {
	mu sync.Mutex
	// by workload key (KeepKey), then by pod name.
	links map[string]map[string]kept
	// watched: the tunnels a goroutine waits on, to forget them when
	// they end (one each, however often a tunnel is kept again).
	watched map[*agent.Link]bool
}

type kept struct {
	uid   types.UID
	token []byte
	link  *agent.Link
}

// KeepKey is the key KeptLinks files a workload's tunnels under.
func KeepKey(namespace, workload string) string { return namespace + "/" + workload }

// put keeps l, the tunnel to pod (uid) of the workload under key, opened
// with token. A tunnel it held for the pod before is closed.
func (k *KeptLinks) put(key, pod string, uid types.UID, token []byte, l *agent.Link) {
	k.mu.Lock()
	if k.links == nil {
		k.links = map[string]map[string]kept{}
	}
	byPod := k.links[key]
	if byPod == nil {
		byPod = map[string]kept{}
		k.links[key] = byPod
	}
	old, had := byPod[pod]
	byPod[pod] = kept{uid: uid, token: bytes.Clone(token), link: l}
	if k.watched == nil {
		k.watched = map[*agent.Link]bool{}
	}
	watch := !k.watched[l]
	k.watched[l] = true
	k.mu.Unlock()
	if had && old.link != l {
		old.link.Close()
	}
	if watch {
		go func() {
			<-l.Done()
			k.forget(key, pod, l)
		}()
	}
}

// forget removes l, ended, if it is still what is kept for pod.
func (k *KeptLinks) forget(key, pod string, l *agent.Link) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.watched, l)
	if byPod := k.links[key]; byPod != nil && byPod[pod].link == l {
		delete(byPod, pod)
		if len(byPod) == 0 {
			delete(k.links, key)
		}
	}
}

// take returns the live tunnel kept for pod (uid) opened with token, and
// no longer keeps it; nil when there is none. A kept tunnel to another pod
// of that name, or opened with another token, is closed.
func (k *KeptLinks) take(key, pod string, uid types.UID, token []byte) *agent.Link {
	if k == nil {
		return nil
	}
	k.mu.Lock()
	e, ok := k.links[key][pod]
	if ok {
		delete(k.links[key], pod)
		if len(k.links[key]) == 0 {
			delete(k.links, key)
		}
	}
	k.mu.Unlock()
	if !ok || e.link.Ended() {
		return nil
	}
	if e.uid != uid || !bytes.Equal(e.token, token) {
		e.link.Close()
		return nil
	}
	return e.link
}

// Link returns the live tunnel kept to pod of the workload under key, or
// nil; it stays kept (the caller must not close it).
func (k *KeptLinks) Link(key, pod string) *agent.Link {
	if k == nil {
		return nil
	}
	k.mu.Lock()
	e, ok := k.links[key][pod]
	k.mu.Unlock()
	if !ok || e.link.Ended() {
		return nil
	}
	return e.link
}

// Pods lists the pods of the workload under key with a live kept tunnel.
func (k *KeptLinks) Pods(key string) []string {
	if k == nil {
		return nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []string
	for pod, e := range k.links[key] {
		if !e.link.Ended() {
			out = append(out, pod)
		}
	}
	sort.Strings(out)
	return out
}

// Drop closes the tunnels kept for the workload under key.
func (k *KeptLinks) Drop(key string) {
	if k == nil {
		return
	}
	k.mu.Lock()
	byPod := k.links[key]
	delete(k.links, key)
	k.mu.Unlock()
	for _, e := range byPod {
		e.link.Close()
	}
}

// Close closes every kept tunnel.
func (k *KeptLinks) Close() {
	if k == nil {
		return
	}
	k.mu.Lock()
	all := k.links
	k.links = nil
	k.mu.Unlock()
	for _, byPod := range all {
		for _, e := range byPod {
			e.link.Close()
		}
	}
}
