// Package access checks, with SelfSubjectAccessReviews, that the user may
// do everything tether needs in a namespace, and lists what is missing.
package access

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	authv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Rule is one permission tether uses.
type Rule struct {
	Verb, Group, Resource, Subresource string
	// Why says what tether uses it for.
	Why string
}

func (r Rule) String() string {
	res := r.Resource
	if r.Subresource != "" {
		res += "/" + r.Subresource
	}
	if r.Group != "" {
		res += "." + r.Group
	}
	return r.Verb + " " + res
}

// Needed lists what intercept, rollback and their follow-up need; docs/intercept.md has it as a Role.
func Needed() []Rule {
	return []Rule{
		{"get", "apps", "deployments", "", "read the workload"},
		{"update", "apps", "deployments", "", "add and remove the agent"},
		{"list", "apps", "deployments", "", "list workloads in error messages"},
		{"get", "apps", "statefulsets", "", "read the workload"},
		{"update", "apps", "statefulsets", "", "add and remove the agent"},
		{"list", "", "services", "", "find the Service that selects the workload"},
		{"update", "", "services", "", "point a numeric targetPort at the agent"},
		{"list", "", "pods", "", "follow the workload's pods"},
		{"create", "", "pods", "portforward", "open the tunnel to each agent"},
		{"get", "", "secrets", "", "read the agent's token"},
		{"create", "", "secrets", "", "create the agent's token"},
		{"delete", "", "secrets", "", "remove the agent's token on rollback"},
		{"get", "", "configmaps", "", "read the journal"},
		{"create", "", "configmaps", "", "journal changes before making them"},
		{"update", "", "configmaps", "", "journal changes before making them"},
		{"delete", "", "configmaps", "", "remove the journal on rollback"},
		{"list", "", "configmaps", "", "find journals for rollback --all"},
	}
}

// Missing returns the rules the user lacks in namespace, in Needed's
// order. The reviews run concurrently: one round trip, not seventeen.
func Missing(ctx context.Context, cs kubernetes.Interface, namespace string) ([]Rule, error) {
	rules := Needed()
	allowed := make([]bool, len(rules))
	errs := make([]error, len(rules))
	var wg sync.WaitGroup
	for i, r := range rules {
		wg.Add(1)
		go func() {
			defer wg.Done()
			review := &authv1.SelfSubjectAccessReview{Spec: authv1.SelfSubjectAccessReviewSpec{
				ResourceAttributes: &authv1.ResourceAttributes{
					Namespace: namespace, Verb: r.Verb, Group: r.Group, Resource: r.Resource, Subresource: r.Subresource,
				},
			}}
			resp, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
			if err != nil {
				errs[i] = fmt.Errorf("check permission %s: %w", r, err)
				return
			}
			allowed[i] = resp.Status.Allowed
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var missing []Rule
	for i, r := range rules {
		if !allowed[i] {
			missing = append(missing, r)
		}
	}
	return missing, nil
}

// Describe formats missing rules for people, one per line.
func Describe(missing []Rule) string {
	var b strings.Builder
	for _, r := range missing {
		fmt.Fprintf(&b, "  - %s (to %s)\n", r, r.Why)
	}
	return b.String()
}
