// Package intercept sends a workload's traffic to a port on this machine:
// it injects the agent (journaling every change first), waits for the
// rollout, holds a tunnel to the agent of every ready pod, and passes each
// intercepted connection to the local port.
package intercept

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/tetherkube/tether/daemon/internal/inject"
	"github.com/tetherkube/tether/daemon/internal/journal"
	"github.com/tetherkube/tether/daemon/internal/rollback"
	"github.com/tetherkube/tether/daemon/internal/workload"
	"github.com/tetherkube/tether/internal/buildinfo"

	"github.com/tetherkube/tether/internal/errdefs"
)

// ProxySettle is how long an intercept waits, once the Service's endpoints
// name only agent pods, for kube-proxy to apply them on the nodes.
const ProxySettle = 2 * time.Second

// Request is what to intercept.
type Request struct {
	Namespace string
	// Workload is deploy/NAME, sts/NAME or NAME.
	Workload string
	// ServicePort is the Service port's name or number.
	ServicePort string
	// LocalPort is where intercepted connections go on this machine.
	LocalPort int
	// AgentImage is the image of the agent container.
	AgentImage string
	// RolloutTimeout bounds the wait for the agent to run in every pod.
	RolloutTimeout time.Duration
	// RecordOnly puts the agent in front of the port to record its traffic
	// without intercepting it: no local port, no tunnels.
	RecordOnly bool
	// RecordArgs are the agent's recording flags.
	RecordArgs []string
	// AgentResources are the agent container's requests and limits; nil
	// gives inject.DefaultResources.
	AgentResources *corev1.ResourceRequirements
}

// Dialer reaches a pod's port through the API server.
type Dialer interface {
	DialPod(ctx context.Context, namespace, pod string, port int) (net.Conn, error)
}

// Manager starts intercepts.
type Manager struct {
	CS     kubernetes.Interface
	Dialer Dialer
	Log    *slog.Logger
	// Progress receives one line per step and per second of waiting.
	Progress func(string)
}

// Intercept is a running intercept.
type Intercept struct {
	Workload    journal.Workload
	Service     string
	ServicePort corev1.ServicePort
	AgentPort   int
	LocalPort   int

	tunnels *tunnels
}

// Start checks the request, changes the cluster (journaled), waits for the
// rollout and connects to every agent. On any failure after the first
// change it rolls the workload back before returning.
func (m *Manager) Start(ctx context.Context, req Request) (*Intercept, error) {
	progress := m.Progress
	if progress == nil {
		progress = func(string) {}
	}
	if req.RolloutTimeout == 0 {
		req.RolloutTimeout = 3 * time.Minute
	}
	if !req.RecordOnly && (req.LocalPort <= 0 || req.LocalPort > 65535) {
		return nil, errdefs.User("local port %d is out of range 1-65535", req.LocalPort)
	}
	ref, err := inject.ParsePortRef(req.ServicePort)
	if err != nil {
		return nil, err
	}
	if !req.RecordOnly {
		if err := checkLocal(req.LocalPort); err != nil {
			return nil, err
		}
	}

	wc := workload.Client{CS: m.CS}
	w, err := wc.Resolve(ctx, req.Namespace, req.Workload)
	if err != nil {
		return nil, err // a workload the user named wrong comes marked as a user error
	}
	tmpl, err := wc.Template(ctx, w)
	if err != nil {
		return nil, err
	}
	svc, err := m.service(ctx, w, tmpl, ref)
	if err != nil {
		return nil, err
	}
	secretName := inject.SecretName(w.Kind, w.Name)
	if s, ok := inject.TokenSecret(&tmpl.Spec); ok {
		secretName = s // the agent in place keeps the token it has
	}
	plan, err := inject.Build(tmpl, svc, ref, inject.Options{AgentImage: req.AgentImage, SecretName: secretName,
		RecordArgs: req.RecordArgs, Resources: req.AgentResources})
	if err != nil {
		return nil, err
	}
	if err := checkSelectsOnly(ctx, m.CS, svc, w); err != nil {
		return nil, err
	}

	if plan.Existing {
		return m.reuse(ctx, req, w, svc, plan, secretName)
	}

	// From here on the cluster changes: journal first, undo on failure.
	store := journal.Store{CS: m.CS}
	entry, err := store.Begin(ctx, &journal.Entry{
		Workload: w, Template: *tmpl, Secret: secretName,
		CreatedAt: time.Now().UTC(), By: "tether " + buildinfo.Get().Version,
	})
	if err != nil {
		return nil, err
	}
	fail := func(cause error) (*Intercept, error) {
		progress("rolling back " + w.String())
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if _, rerr := rollback.Restore(rctx, m.CS, w, true); rerr != nil {
			return nil, fmt.Errorf("%w; and rolling back failed too (run `tether rollback %s`): %v", cause, w, rerr)
		}
		return nil, cause
	}
	if plan.Service != nil {
		if entry.Services == nil {
			entry.Services = map[string]journal.ServiceEntry{}
		}
		if _, ok := entry.Services[svc.Name]; !ok {
			entry.Services[svc.Name] = journal.ServiceEntry{Ports: svc.Spec.Ports}
		}
		if err := store.Save(ctx, entry); err != nil {
			return fail(err)
		}
	}
	token, err := m.ensureToken(ctx, w.Namespace, secretName)
	if err != nil {
		return fail(err)
	}
	progress(fmt.Sprintf("adding the agent to %s (agent port %d in front of %s:%d)", w, plan.AgentPort, plan.AppContainer, plan.AppPort))
	stored, err := wc.SetTemplate(ctx, w, plan.Template)
	if err != nil {
		return fail(err)
	}
	entry.AppliedTemplateHash = journal.Hash(stored)
	if err := store.Save(ctx, entry); err != nil {
		return fail(err)
	}
	if err := waitRollout(ctx, m.CS, w, req.RolloutTimeout, progress); err != nil {
		return fail(err)
	}
	want, _, err := rolloutDone(ctx, m.CS, w)
	if err != nil {
		return fail(err)
	}
	if plan.Service != nil {
		progress(fmt.Sprintf("pointing service/%s port %d at the agent", svc.Name, plan.ServicePort.Port))
		ports, err := m.retarget(ctx, svc.Namespace, svc.Name, plan.Service.Spec.Ports)
		if err != nil {
			return fail(err)
		}
		se := entry.Services[svc.Name]
		se.AppliedPortsHash = journal.Hash(ports)
		entry.Services[svc.Name] = se
		if err := store.Save(ctx, entry); err != nil {
			return fail(err)
		}
	}

	if err := waitEndpoints(ctx, m.CS, svc.Namespace, svc.Name, want, req.RolloutTimeout, progress); err != nil {
		return fail(err)
	}
	// kube-proxy applies endpoint changes to each node's rules up to about a
	// second later (its minimum sync period); until then a new connection
	// may still go to a pod being replaced.
	progress(fmt.Sprintf("letting the nodes apply service/%s's new endpoints (%s)", svc.Name, ProxySettle))
	select {
	case <-time.After(ProxySettle):
	case <-ctx.Done():
		return fail(ctx.Err())
	}
	if req.RecordOnly {
		return recordOnly(w, svc, plan), nil
	}
	ic, err := m.connect(ctx, req, w, svc, plan, token)
	if err != nil {
		return fail(err)
	}
	return ic, nil
}

// recordOnly describes an agent that records without intercepting.
func recordOnly(w journal.Workload, svc *corev1.Service, plan inject.Plan) *Intercept {
	return &Intercept{Workload: w, Service: svc.Name, ServicePort: plan.ServicePort, AgentPort: int(plan.AgentPort)}
}

// reuse intercepts through an agent an earlier intercept left in place:
// the cluster does not change.
func (m *Manager) reuse(ctx context.Context, req Request, w journal.Workload, svc *corev1.Service, plan inject.Plan, secretName string) (*Intercept, error) {
	s, err := m.CS.CoreV1().Secrets(w.Namespace).Get(ctx, secretName, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("read the agent token of %s (run `tether rollback %s` to start over): %w", w, w, err)
	}
	if m.Progress != nil {
		m.Progress(fmt.Sprintf("%s already runs the agent on port %d", w, plan.AgentPort))
	}
	if req.RecordOnly {
		return recordOnly(w, svc, plan), nil
	}
	return m.connect(ctx, req, w, svc, plan, s.Data[inject.TokenKey])
}

// connect opens the tunnels to the workload's agents.
func (m *Manager) connect(ctx context.Context, req Request, w journal.Workload, svc *corev1.Service, plan inject.Plan, token []byte) (*Intercept, error) {
	sel, err := workload.Client{CS: m.CS}.Selector(ctx, w)
	if err != nil {
		return nil, err
	}
	log := m.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := newTunnels(m.CS, m.Dialer, log, w.Namespace, sel.String(), token, int(plan.AgentPort), req.LocalPort)
	if err := t.start(ctx); err != nil {
		t.stop()
		return nil, err
	}
	return &Intercept{
		Workload: w, Service: svc.Name, ServicePort: plan.ServicePort,
		AgentPort: int(plan.AgentPort), LocalPort: req.LocalPort, tunnels: t,
	}, nil
}

// checkLocal refuses an intercept whose local port has nothing listening.
func checkLocal(port int) error {
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 2*time.Second)
	if err != nil {
		return errdefs.User("nothing listens on localhost:%d; start the process that should receive the traffic first", port)
	}
	return c.Close()
}

// service finds the one Service that selects the workload and has the port.
func (m *Manager) service(ctx context.Context, w journal.Workload, tmpl *corev1.PodTemplateSpec, ref inject.PortRef) (*corev1.Service, error) {
	list, err := m.CS.CoreV1().Services(w.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	selecting := inject.SelectingServices(list.Items, tmpl.Labels)
	if len(selecting) == 0 {
		return nil, errdefs.User("no Service in namespace %s selects %s, so no cluster traffic reaches it through a Service", w.Namespace, w)
	}
	var withPort []corev1.Service
	for _, s := range selecting {
		for _, p := range s.Spec.Ports {
			if (ref.Name != "" && p.Name == ref.Name) || (ref.Number != 0 && p.Port == ref.Number) {
				withPort = append(withPort, s)
				break
			}
		}
	}
	withPort = inject.ReachableServices(withPort)
	switch len(withPort) {
	case 0:
		// Let Build explain with the first Service's ports.
		return &selecting[0], nil
	case 1:
		return &withPort[0], nil
	default:
		return nil, errdefs.User("services %s and %s both select %s and have port %s; tether intercepts through one Service",
			withPort[0].Name, withPort[1].Name, w, ref)
	}
}

// ensureToken returns the agent token from secret name, creating it.
func (m *Manager) ensureToken(ctx context.Context, ns, name string) ([]byte, error) {
	s, err := m.CS.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if err == nil {
		return s.Data[inject.TokenKey], nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("read agent token: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	token := []byte(hex.EncodeToString(raw))
	_, err = m.CS.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"tether.dev/agent-token": "true"}},
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{inject.TokenKey: token},
	}, metav1.CreateOptions{FieldManager: "tether"})
	if err != nil {
		return nil, fmt.Errorf("create agent token secret: %w", err)
	}
	return token, nil
}

// retarget sets a Service's ports and returns them as stored.
func (m *Manager) retarget(ctx context.Context, ns, name string, ports []corev1.ServicePort) ([]corev1.ServicePort, error) {
	var stored []corev1.ServicePort
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		svc, err := m.CS.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		svc.Spec.Ports = ports
		svc, err = m.CS.CoreV1().Services(ns).Update(ctx, svc, metav1.UpdateOptions{FieldManager: "tether"})
		if err == nil {
			stored = svc.Spec.Ports
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("retarget service %s: %w", name, err)
	}
	return stored, nil
}

// Pods returns the pods whose agents this intercept has a tunnel to.
func (i *Intercept) Pods() []string {
	if i.tunnels == nil {
		return nil
	}
	return i.tunnels.pods()
}

// Leave stops the intercept: every agent sends its connections to the app
// again and the tunnels close. The agents stay, so leaving restarts nothing.
func (i *Intercept) Leave(ctx context.Context) error {
	return i.tunnels.leave(ctx)
}
