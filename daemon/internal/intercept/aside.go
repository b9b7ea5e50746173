package intercept

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/daemon/internal/inject"
	"github.com/tetherkube/tether/daemon/internal/journal"
	"github.com/tetherkube/tether/daemon/internal/workload"
)

// A sidecar agent stays in its pods after leave, so that the next
// intercept is instant, and records for its idle time (--record-idle).
// Once nothing has intercepted it for that long it only costs the
// workload's callers a hop, so the daemon points the Service back at the
// app ("steps the agents aside"): the agents stay, and the next intercept
// points the Service at them again, waiting for the nodes' rules as a
// first intercept does.
//
// Another daemon may intercept the same workload in that moment. The
// stepping-aside daemon reads the Service, then asks every agent to step
// aside (each refuses while anything intercepts it, and, once aside,
// refuses intercepts: agent.ErrAside), then updates the Service
// conditional on the version it read. A daemon whose intercept meets an
// agent aside brings it back and sets journal.AnnotationBack on the
// Service, which changes its version, so that update fails; a daemon
// that finds the Service already aside sets it back the same way. Every
// Service change is journaled first, and rollback knows both forms.

// ErrAgentsBusy: StepAside found an agent in use, or not idle long
// enough.
var ErrAgentsBusy = errors.New("an agent of the workload is in use or not idle long enough")

// Asider is the part of an agent's API that StepAside uses
// (agent.Service).
type Asider interface {
	StepAside(ctx context.Context, back bool) error
}

// StepAside points the Services that send w's traffic to its sidecar
// agents back at the app, once every agent given (one per running pod)
// agrees. It returns the Services it changed; none when there was
// nothing to change. ErrAgentsBusy when an agent refused.
func (m *Manager) StepAside(ctx context.Context, w journal.Workload, agents map[string]Asider) ([]string, error) {
	store := journal.Store{CS: m.CS}
	e, err := store.Load(ctx, w)
	if err != nil {
		return nil, err
	}
	if e == nil || e.NoRestart || e.Gateway {
		return nil, nil // no sidecar of tether's: nothing of its own to undo
	}
	tmpl, err := workload.Client{CS: m.CS}.Template(ctx, w)
	if err != nil {
		return nil, err
	}
	// The Services as read now, before the agents are asked: the update
	// below is conditional on these versions.
	list, err := m.CS.CoreV1().Services(w.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	type change struct {
		svc   *corev1.Service
		ports []corev1.ServicePort
	}
	var changes []change
	for _, s := range inject.SelectingServices(list.Items, tmpl.Labels) {
		if ports, ok := inject.AsidePorts(tmpl, s.Spec.Ports); ok {
			changes = append(changes, change{svc: s.DeepCopy(), ports: ports})
		}
	}
	if len(changes) == 0 {
		return nil, nil
	}
	var asked []Asider
	back := func() {
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		for _, a := range asked {
			_ = a.StepAside(bctx, true) // an agent that cannot be told stays aside: the next intercept brings it back
		}
	}
	for pod, a := range agents {
		if err := a.StepAside(ctx, false); err != nil {
			back()
			if errors.Is(err, agent.ErrBusy) {
				return nil, fmt.Errorf("pod %s: %w: %w", pod, ErrAgentsBusy, err)
			}
			return nil, fmt.Errorf("pod %s: %w", pod, err)
		}
		asked = append(asked, a)
	}
	var done []string
	for _, c := range changes {
		if err := m.setAside(ctx, store, w, c.svc, c.ports); err != nil {
			back()
			return done, err
		}
		done = append(done, c.svc.Name)
	}
	return done, nil
}

// setAside journals, then sets, svc's ports to ports (the agents aside),
// conditional on svc's version as read.
func (m *Manager) setAside(ctx context.Context, store journal.Store, w journal.Workload, svc *corev1.Service, ports []corev1.ServicePort) error {
	journalAside := func(h string) error {
		_, err := store.Update(ctx, w, func(e *journal.Entry) error {
			if e.Services == nil {
				e.Services = map[string]journal.ServiceEntry{}
			}
			se, ok := e.Services[svc.Name]
			if !ok {
				se.Ports = svc.Spec.Ports // tether had not changed it: the agent took the port's name
			}
			se.AsideFrom, se.AsidePortsHash = svc.Spec.Ports, h
			e.Services[svc.Name] = se
			return nil
		})
		return err
	}
	if err := journalAside(journal.Hash(ports)); err != nil {
		return err
	}
	s := svc.DeepCopy()
	s.Spec.Ports = ports
	stored, err := m.CS.CoreV1().Services(svc.Namespace).Update(ctx, s, metav1.UpdateOptions{FieldManager: "tether"})
	if err != nil {
		// The journal keeps a hash no Service has: harmless, and the next
		// stepping aside writes its own.
		if apierrors.IsConflict(err) {
			return fmt.Errorf("service %s changed while the agents stepped aside (another tether intercepting?): %w", svc.Name, err)
		}
		return fmt.Errorf("update service %s: %w", svc.Name, err)
	}
	if h := journal.Hash(stored.Spec.Ports); h != journal.Hash(ports) {
		return journalAside(h)
	}
	return nil
}

// asideBack returns svc as it is once pointed at w's agents again when
// they stepped aside (its ports are the ones tether journaled as set
// aside), else nil. Nothing changes.
func (m *Manager) asideBack(ctx context.Context, w journal.Workload, svc *corev1.Service) (*corev1.Service, error) {
	e, err := journal.Store{CS: m.CS}.Load(ctx, w)
	if err != nil || e == nil {
		return nil, err
	}
	se, ok := e.Services[svc.Name]
	if !ok || se.AsidePortsHash == "" || journal.Hash(svc.Spec.Ports) != se.AsidePortsHash {
		return nil, nil
	}
	s := svc.DeepCopy()
	s.Spec.Ports = se.AsideFrom
	markBack(s)
	return s, nil
}

// pointBack updates the Service to back (asideBack's), conditional on
// the version read, and clears the journal's record of the stepping
// aside. Both forms of the Service were journaled before: no journal
// first.
func (m *Manager) pointBack(ctx context.Context, w journal.Workload, back *corev1.Service, progress func(string)) (*corev1.Service, error) {
	progress(fmt.Sprintf("the agents of %s stepped aside after their idle time: pointing service/%s at them again", w, back.Name))
	store := journal.Store{CS: m.CS}
	stored, err := m.CS.CoreV1().Services(back.Namespace).Update(ctx, back, metav1.UpdateOptions{FieldManager: "tether"})
	if err != nil {
		return nil, fmt.Errorf("point service %s at the agents again: %w", back.Name, err)
	}
	if _, err := store.Update(ctx, w, func(e *journal.Entry) error {
		if se, ok := e.Services[stored.Name]; ok {
			se.AsidePortsHash, se.AsideFrom = "", nil
			e.Services[stored.Name] = se
		}
		return nil
	}); err != nil {
		return nil, err
	}
	return stored, nil
}

// bringBack brings an agent that stepped aside back in front of the app,
// then changes the Service's version (journal.AnnotationBack), failing a
// stepping aside under way: a Service still pointed at the agents stays
// so.
func bringBack(ctx context.Context, cs kubernetes.Interface, ns, svc string, a Asider) error {
	if err := a.StepAside(ctx, true); err != nil {
		return err
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s, err := cs.CoreV1().Services(ns).Get(ctx, svc, metav1.GetOptions{})
		if err != nil {
			return err
		}
		markBack(s)
		_, err = cs.CoreV1().Services(ns).Update(ctx, s, metav1.UpdateOptions{FieldManager: "tether"})
		return err
	})
}

// markBack sets journal.AnnotationBack on s to now.
func markBack(s *corev1.Service) {
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	s.Annotations[journal.AnnotationBack] = time.Now().UTC().Format(time.RFC3339Nano)
}
