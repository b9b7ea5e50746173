package intercept

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tetherkube/tether/daemon/internal/inject"
	"github.com/tetherkube/tether/daemon/internal/journal"
)

// recordOnly describes an agent that records without intercepting.
func recordOnly(w journal.Workload, svc *corev1.Service, plan inject.Plan) *Intercept {
	return &Intercept{Workload: w, Service: svc.Name, ServicePort: plan.ServicePort, AgentPort: int(plan.AgentPort)}
}

// reuse intercepts through an agent an earlier intercept left in place:
// the cluster does not change, unless the agents had stepped aside and
// the Service was just pointed at them again (cameBack): then the nodes'
// rules are waited for.
func (m *Manager) reuse(ctx context.Context, req Request, w journal.Workload, svc *corev1.Service, plan inject.Plan, secretName string,
	cameBack bool, progress func(string)) (*Intercept, error) {
	s, err := m.CS.CoreV1().Secrets(w.Namespace).Get(ctx, secretName, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("read the agent token of %s (run `tether rollback %s` to start over): %w", w, w, err)
	}
	progress(fmt.Sprintf("%s already runs the agent on port %d", w, plan.AgentPort))
	if !req.RecordOnly && (len(req.RecordArgs) > 0 || req.AgentResources != nil) {
		// An intercept's agent settings apply when it adds the agent.
		progress(fmt.Sprintf("the agent in place keeps its settings: --agent-idle, --agent-cpu and --agent-memory apply "+
			"when an intercept adds it (`tether rollback %s` removes it)", w))
	}
	token := s.Data[inject.TokenKey]
	if req.RecordOnly {
		if cameBack {
			if err := m.readyRecording(ctx, w, svc, plan, token, nil, progress); err != nil {
				return nil, err
			}
		}
		return recordOnly(w, svc, plan), nil
	}
	ic, err := m.connect(ctx, req, w, svc, plan, token, nil, nil)
	if err != nil {
		return nil, err
	}
	if cameBack {
		if err := m.readyIntercept(ctx, ic, svc, nil, progress); err != nil {
			return nil, err
		}
	}
	ic.tunnels.settle(ctx) // the direct paths of tunnels not kept (tunnels.dial)
	return ic, nil
}
