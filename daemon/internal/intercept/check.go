package intercept

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tetherkube/tether/daemon/internal/inject"
	"github.com/tetherkube/tether/daemon/internal/journal"
	"github.com/tetherkube/tether/daemon/internal/workload"
	"github.com/tetherkube/tether/internal/errdefs"
)

// The checks an intercept makes before it changes anything: they read the
// cluster and this machine, and change neither.

// prepared is what Start reads and checks before it changes anything.
type prepared struct {
	w          journal.Workload
	tmpl       *corev1.PodTemplateSpec
	svc, back  *corev1.Service
	plan       inject.Plan
	secretName string
	// journaled: the workload had a journal when the checks read it.
	journaled bool
}

// Check runs the checks Start runs before its first change, and changes
// nothing: for a caller that changes the cluster itself before it starts
// the intercept (intercept --mirror --passive), so bad input is refused
// while the cluster is as it was.
func (m *Manager) Check(ctx context.Context, req Request) error {
	_, err := m.prepare(ctx, req, newTimeline())
	return err
}

// checkRequest runs the checks every intercept starts with, sidecar or
// --no-restart: the local port (in range, something listening, unless
// it comes later or only records), the Service port's form, and the
// workload (resolved unless the caller did).
func (m *Manager) checkRequest(ctx context.Context, req Request, tl *timeline) (inject.PortRef, journal.Workload, error) {
	if !req.RecordOnly && (req.LocalPort <= 0 || req.LocalPort > 65535) {
		return inject.PortRef{}, journal.Workload{}, errdefs.User("local port %d is out of range 1-65535", req.LocalPort)
	}
	ref, err := inject.ParsePortRef(req.ServicePort)
	if err != nil {
		return inject.PortRef{}, journal.Workload{}, err
	}
	if !req.RecordOnly && !req.LocalPortLater {
		if err := CheckLocal(req.LocalPort); err != nil {
			return inject.PortRef{}, journal.Workload{}, err
		}
	}
	tl.mark("local")
	w := req.Resolved
	if w.Name == "" {
		if w, err = (workload.Client{CS: m.CS}).Resolve(ctx, req.Namespace, req.Workload); err != nil {
			return inject.PortRef{}, journal.Workload{}, err // a workload the user named wrong comes marked as a user error
		}
	}
	return ref, w, nil
}

// checkPlan runs the checks every intercept makes of its Service and
// plan: the Service selects only the workload's pods, and a filter or
// mirror is asked only of a port that may carry cleartext HTTP.
func (m *Manager) checkPlan(ctx context.Context, req Request, w journal.Workload, svc *corev1.Service, plan inject.Plan) error {
	if err := checkSelectsOnly(ctx, m.CS, svc, w); err != nil {
		return err
	}
	if !req.Filter.IsZero() || req.Mirror {
		if why := notHTTP(plan.ServicePort); why != "" {
			return errdefs.User("service %s port %s %s: tether filters and mirrors only cleartext HTTP (HTTP/1.x, h2c, gRPC); "+
				"intercept it without --http-header, --http-path and --mirror to take all of its traffic", svc.Name, portName(plan.ServicePort), why)
		}
	}
	return nil
}

func (m *Manager) prepare(ctx context.Context, req Request, tl *timeline) (*prepared, error) {
	for try := 1; ; try++ {
		p, err := m.prepareOnce(ctx, req, tl)
		// Another intercept's release ended while this one read: read
		// again, as it is now.
		if !errors.Is(err, errPinReleased) || try == 3 {
			return p, err
		}
	}
}

func (m *Manager) prepareOnce(ctx context.Context, req Request, tl *timeline) (*prepared, error) {
	ref, w, err := m.checkRequest(ctx, req, tl)
	if err != nil {
		return nil, err
	}
	// The journal's check and the list of the namespace's Services run
	// beside the read of the template (each a request), the journal's
	// refusal first among their errors.
	var (
		journalErr  error
		journaled   bool
		services    *corev1.ServiceList
		servicesErr error
		journalRead sync.WaitGroup
	)
	journalRead.Go(func() { journaled, journalErr = readJournal(ctx, m.CS, w) })
	journalRead.Go(func() { services, servicesErr = m.CS.CoreV1().Services(w.Namespace).List(ctx, metav1.ListOptions{}) })
	tmpl, err := workload.Client{CS: m.CS}.Template(ctx, w)
	if err != nil {
		journalRead.Wait()
		return nil, err
	}
	journalRead.Wait()
	svc, err := m.serviceOf(services, servicesErr, w, tmpl, ref)
	if journalErr != nil {
		return nil, journalErr
	}
	if err != nil {
		return nil, err
	}
	tl.mark("template")
	// Agents that stepped aside after their idle time (aside.go): plan on
	// the Service as pointed at them again, which it is once the checks
	// pass.
	back, err := m.asideBack(ctx, w, svc)
	if err != nil {
		return nil, err
	}
	if back != nil {
		svc = back
	}
	tl.mark("service")
	secretName := w.TokenSecretName()
	plan, err := inject.Build(tmpl, svc, ref, inject.Options{AgentImage: req.AgentImage, SecretName: secretName,
		RecordArgs: req.RecordArgs, Recording: req.RecordOnly, Resources: req.AgentResources})
	if err != nil {
		return nil, err
	}
	if err := m.checkPlan(ctx, req, w, svc, plan); err != nil {
		return nil, err
	}

	return &prepared{w: w, tmpl: tmpl, svc: svc, back: back, plan: plan, secretName: secretName, journaled: journaled}, nil
}

// CheckLocal refuses an intercept whose local port has nothing listening.
func CheckLocal(port int) error {
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 2*time.Second)
	if err != nil {
		return errdefs.User("nothing listens on localhost:%d; start the process that should receive the traffic first", port)
	}
	return c.Close()
}

// service finds the one Service that selects the workload and has the port.
func (m *Manager) service(ctx context.Context, w journal.Workload, tmpl *corev1.PodTemplateSpec, ref inject.PortRef) (*corev1.Service, error) {
	list, err := m.CS.CoreV1().Services(w.Namespace).List(ctx, metav1.ListOptions{})
	return m.serviceOf(list, err, w, tmpl, ref)
}

// serviceOf is service with the namespace's Services listed (err: the
// list's error).
func (m *Manager) serviceOf(list *corev1.ServiceList, err error, w journal.Workload, tmpl *corev1.PodTemplateSpec, ref inject.PortRef) (*corev1.Service, error) {
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

// notHTTP says why a Service port does not carry cleartext HTTP, as its
// protocol, appProtocol or name (Istio's "<protocol>[-suffix]" convention)
// declare it; "" when it may.
func notHTTP(p corev1.ServicePort) string {
	if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
		return "is " + string(p.Protocol)
	}
	if ap := p.AppProtocol; ap != nil && *ap != "" {
		switch strings.ToLower(*ap) {
		case "http", "http2", "h2c", "grpc", "grpc-web", "kubernetes.io/h2c", "kubernetes.io/ws":
			return ""
		}
		return "has appProtocol " + *ap
	}
	proto, _, _ := strings.Cut(strings.ToLower(p.Name), "-")
	switch proto {
	case "https", "tls", "tcp", "udp", "mongo", "mysql", "redis", "postgres", "postgresql", "kafka", "amqp", "mqtt", "smtp", "ftp", "ssh", "dns":
		return "is named " + p.Name
	}
	return ""
}

func portName(p corev1.ServicePort) string {
	if p.Name != "" {
		return fmt.Sprintf("%d (%s)", p.Port, p.Name)
	}
	return strconv.Itoa(int(p.Port))
}
