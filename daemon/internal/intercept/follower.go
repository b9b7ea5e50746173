package intercept

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/daemon/internal/journal"
)

// follower keeps an intercept --no-restart: an ephemeral agent in every
// ready pod of the workload, a tunnel to each, and the mark on exactly the
// pods whose agent answers. A pod added later gets its agent and mark; a
// pod whose tunnel drops loses its mark at once (so the Service stops
// sending it traffic), and gets it back when its agent answers again. A
// pod whose agent died gets no new one while the intercept runs.
type follower struct {
	cs       kubernetes.Interface
	dialer   Dialer
	log      *slog.Logger
	progress func(string)
	req      Request
	np       *noRestartPlan
	t        *tunnels
	// tl times the start's steps, and the joins of the pods the start
	// left to the background (joinRest); nil once they are over.
	tl atomic.Pointer[timeline]
	// rest: the background's joins, cancelled and waited for by stop.
	restCancel context.CancelFunc
	restDone   chan struct{}

	// jmu serializes this intercept's journal writes; journaled holds the
	// pods whose mark the journal holds (by UID), svcJournaled whether it
	// holds the Service.
	jmu          sync.Mutex
	journaled    map[string]types.UID
	svcJournaled bool

	mu      sync.Mutex
	marks   map[string]bool // the pods marked now
	joining map[string]bool
	dead    map[string]bool // pods whose agent died, told once
	cancel  context.CancelFunc
	done    chan struct{}
	// changed wakes the follow loop (follow.go): a pod changed, or a
	// tunnel dropped.
	changed chan struct{}
}

func (m *Manager) newFollower(req Request, np *noRestartPlan) *follower {
	log := m.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	progress := m.Progress
	if progress == nil {
		progress = func(string) {}
	}
	path := req.Path
	if path == "" {
		path = agent.PathAuto
	}
	if path == agent.PathAuto && m.Paths == nil {
		path = agent.PathPortForward
	}
	spec := agent.InterceptSpec{ListenPort: np.agentPort, ID: req.ID, Owner: req.Owner, Filter: req.Filter, Mirror: req.Mirror}
	t := newTunnels(m.CS, m.Dialer, log, np.w.Namespace, "", nil, spec, req.LocalPort)
	t.path, t.chooser, t.onLink = path, m.Paths, m.OnLink
	return &follower{cs: m.CS, dialer: m.Dialer, log: log, progress: progress, req: req, np: np, t: t,
		marks: map[string]bool{}, joining: map[string]bool{}, dead: map[string]bool{}, journaled: map[string]types.UID{}, changed: make(chan struct{}, 1)}
}

// journal changes the intercept's journal, one write at a time.
func (f *follower) journal(ctx context.Context, change func(*journal.Entry) error) error {
	f.jmu.Lock()
	defer f.jmu.Unlock()
	_, err := journal.Store{CS: f.cs}.Update(ctx, f.np.w, change)
	return err
}

// journaledAll notes that the journal was begun with the Service and the
// marks of every planned pod (noRestartPlan.entry).
func (f *follower) journaledAll() {
	f.jmu.Lock()
	defer f.jmu.Unlock()
	f.svcJournaled = true
	for _, p := range f.np.pods {
		f.journaled[p.Name] = p.UID
	}
}

// marked returns the pods marked now.
func (f *follower) marked() map[string]bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]bool, len(f.marks))
	for k := range f.marks {
		out[k] = true
	}
	return out
}

// mark journals the pod's label as it is (unless the journal holds it),
// then sets it to the intercept's mark, on that pod (its UID) as read.
func (f *follower) mark(ctx context.Context, p *corev1.Pod) error {
	ns := f.np.w.Namespace
	f.jmu.Lock()
	journaled := f.journaled[p.Name] == p.UID
	f.jmu.Unlock()
	if !journaled {
		err := f.journal(ctx, func(e *journal.Entry) error {
			if e.Marks == nil {
				e.Marks = map[string]journal.Mark{}
			}
			if old, ok := e.Marks[p.Name]; ok && old.UID == p.UID {
				return nil // marked before (a tunnel that dropped and came back): the original stays
			}
			e.Marks[p.Name] = f.np.markOf(p)
			return nil
		})
		if err != nil {
			return fmt.Errorf("journal the mark of pod %s: %w", p.Name, err)
		}
		f.jmu.Lock()
		f.journaled[p.Name] = p.UID
		f.jmu.Unlock()
	}
	// One patch: its UID is a precondition (the API server refuses to
	// change a UID), so a pod replaced by one of the same name is not
	// marked.
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"uid": p.UID, "labels": map[string]string{MarkLabel: f.np.mark}}})
	if err != nil {
		return err
	}
	_, err = f.cs.CoreV1().Pods(ns).Patch(ctx, p.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "tether"})
	if err != nil {
		return fmt.Errorf("mark pod %s: %w", p.Name, err)
	}
	f.mu.Lock()
	f.marks[p.Name] = true
	f.mu.Unlock()
	return nil
}

// unmark removes the intercept's mark from the pod, if it is still there.
func (f *follower) unmark(ctx context.Context, pod string) error {
	f.mu.Lock()
	delete(f.marks, pod)
	f.mu.Unlock()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := f.cs.CoreV1().Pods(f.np.w.Namespace).Get(ctx, pod, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cur.Labels[MarkLabel] != f.np.mark {
			return nil
		}
		delete(cur.Labels, MarkLabel)
		_, err = f.cs.CoreV1().Pods(f.np.w.Namespace).Update(ctx, cur, metav1.UpdateOptions{FieldManager: "tether"})
		return err
	})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// watch takes the pod out of the Service as soon as its tunnel l drops
// (the agent died, or the connection to it), unless the follower has
// replaced l or stopped meanwhile.
func (f *follower) watch(pod string, l *agent.Link) {
	for gone := false; !gone; {
		select {
		case <-l.Done():
			gone = true
		case <-l.DirectDone():
			// The direct connection ended at once: the agent died (its
			// port-forward session would tell only by its dead-peer check,
			// about a second later), or just the network path did. Ask.
			ctx, cancel := context.WithTimeout(context.Background(), agentAsk)
			_, err := l.Agent().Info(ctx)
			cancel()
			if err != nil {
				l.Close()
				gone = true
			}
		}
	}
	f.t.mu.Lock()
	current := f.t.links[pod] == l
	if current {
		delete(f.t.links, pod)
	}
	f.t.mu.Unlock()
	if !current {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.unmark(ctx, pod); err != nil {
		f.log.Warn("could not take a pod whose agent stopped answering out of the Service", "pod", pod, "err", err)
		return
	}
	f.log.Warn("the agent of a pod stopped answering: pod taken out of the Service", "pod", pod, "service", f.np.svc.Name)
	// A tunnel that dropped while its agent lives (a network blip) is
	// opened again, and the pod marked again, by the next sync; nothing
	// in the pod changes to wake it.
	f.pokeAfter(rejoinAfter)
}

// agentAsk bounds the question whether an agent lives when its direct
// connection ended: a slow answer takes the pod out of the Service, and
// the next sync (a second later) puts it back if the agent lives.
const agentAsk = 500 * time.Millisecond

func (f *follower) stop() {
	if f.restCancel != nil {
		f.restCancel()
		<-f.restDone
		f.restCancel = nil
	}
	if f.cancel != nil {
		f.cancel()
		<-f.done
		f.cancel = nil
	}
}

// leave restores the Service and removes the marks (from the journal,
// which goes with them), then asks every agent to send its traffic to the
// app and closes the tunnels. The agents stay in their pods, idle.
func (f *follower) leave(ctx context.Context) error {
	f.stop()
	_, rerr := undoNoRestart(ctx, f.cs, f.np.w)
	if rerr != nil {
		rerr = fmt.Errorf("restore service/%s and the pods' labels: %w; run `tether rollback %s`", f.np.svc.Name, rerr, f.np.w)
	}
	return errors.Join(rerr, f.t.leave(ctx))
}

// undo undoes a failed start: the tunnels close (the agents send their
// connections to the app again), then the Service and the marks are
// restored from the journal.
func (f *follower) undo(ctx context.Context, cause error) error {
	f.stop()
	f.t.mu.Lock()
	links := f.t.links
	f.t.links = map[string]*agent.Link{}
	f.t.mu.Unlock()
	for _, l := range links {
		l.Close()
	}
	if _, err := undoNoRestart(ctx, f.cs, f.np.w); err != nil {
		return fmt.Errorf("%w; %w: %v; run `tether rollback %s` to see what it can restore", cause, errUndoIncomplete, err, f.np.w)
	}
	return cause
}
