package doctor

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/version"

	"github.com/tetherkube/tether/internal/access"
)

// Kubernetes versions: ephemeral containers are GA from 1.25; the local
// cluster tether is tested on runs 1.32.
const (
	minMinor    = 25
	testedMinor = 32
)

// checkContext: the cluster answers, with a version tether supports;
// answers says whether it answered at all.
func (o *DoctorOptions) checkContext(ctx context.Context) (Result, bool) {
	r := Result{Check: "kube context"}
	where := fmt.Sprintf("context %s (%s)", o.Kube.Context, o.Kube.Server)
	type answer struct {
		v   *version.Info
		err error
	}
	ch := make(chan answer, 1)
	go func() {
		v, err := o.client.Discovery().ServerVersion()
		ch <- answer{v, err}
	}()
	var a answer
	select {
	case a = <-ch:
	case <-time.After(o.CheckTimeout):
		a.err = fmt.Errorf("no answer within %s", o.CheckTimeout)
	case <-ctx.Done():
		a.err = ctx.Err()
	}
	if apierrors.IsUnauthorized(a.err) {
		r.Status, r.Detail = StatusFail, fmt.Sprintf("%s refuses your credentials: %v", where, a.err)
		r.Fix = "log in again (your token or certificate expired?) or pick another --context; `kubectl version` shows the same"
		return r, false
	}
	if a.err != nil {
		r.Status, r.Detail = StatusFail, fmt.Sprintf("%s does not answer: %v", where, a.err)
		r.Fix = "check --context/KUBECONFIG and your network or VPN; `kubectl version` shows the same"
		return r, false
	}
	minor, err := strconv.Atoi(strings.TrimRight(a.v.Minor, "+"))
	if a.v.Major != "1" || err != nil {
		r.Status, r.Detail = StatusWarn, fmt.Sprintf("%s runs Kubernetes %s (major %q, minor %q), a version tether cannot read; it supports 1.%d and later", where, a.v.GitVersion, a.v.Major, a.v.Minor, minMinor)
		return r, true
	}
	if minor < minMinor {
		r.Status = StatusFail
		r.Detail = fmt.Sprintf("%s runs Kubernetes %s: tether supports 1.%d and later (ephemeral containers are GA there), tested on 1.%d", where, a.v.GitVersion, minMinor, testedMinor)
		r.Fix = fmt.Sprintf("upgrade the cluster to Kubernetes 1.%d or later", minMinor)
		return r, true
	}
	r.Status = StatusOK
	r.Detail = fmt.Sprintf("%s runs Kubernetes %s (tether supports 1.%d and later, tested on 1.%d)", where, a.v.GitVersion, minMinor, testedMinor)
	return r, true
}

// checkEphemeral: the API serves pods/ephemeralcontainers.
func (o *DoctorOptions) checkEphemeral(ctx context.Context) Result {
	r := Result{Check: "ephemeral containers"}
	list, err := o.client.Discovery().ServerResourcesForGroupVersion("v1")
	if err != nil {
		r.Status, r.Detail = StatusWarn, fmt.Sprintf("could not list the API's core resources: %v", err)
		return r
	}
	for _, res := range list.APIResources {
		if res.Name == "pods/ephemeralcontainers" {
			r.Status, r.Detail = StatusOK, "the API serves pods/ephemeralcontainers (trace, capture, dns, env and run add their agent there)"
			return r
		}
	}
	r.Status = StatusFail
	r.Detail = "the API does not serve pods/ephemeralcontainers (Kubernetes before 1.25, or the EphemeralContainers feature gate is off): trace, capture, dns, env and run into a workload's pod cannot add their agent; intercept and record work"
	r.Fix = fmt.Sprintf("upgrade the cluster to Kubernetes 1.%d or later", minMinor)
	return r
}

// checkPermissions: one row per feature with what the user may not do in
// the namespace; one round of access reviews for every rule.
func (o *DoctorOptions) checkPermissions(ctx context.Context) []Result {
	ctx, cancel := context.WithTimeout(ctx, o.CheckTimeout)
	defer cancel()
	ns := o.Kube.Namespace
	missing, err := access.Missing(ctx, o.client, ns, access.NeededFor(access.Features, access.Objects{}))
	if err != nil {
		return []Result{{Check: "permissions", Status: StatusFail, Detail: fmt.Sprintf("could not check your permissions in namespace %s: %v", ns, err),
			Fix: "SelfSubjectAccessReviews are allowed to every authenticated user: check the kube context's credentials"}}
	}
	lacks := map[access.Rule]bool{}
	for _, r := range missing {
		lacks[ruleKey(r)] = true
	}
	var out []Result
	for _, f := range access.Features {
		var checked int
		var miss []string
		for _, r := range access.Rules(f, access.Objects{}) {
			if r.PerObject && r.Name == "" {
				continue // not known without a workload: access.Missing skips it too
			}
			checked++
			if lacks[ruleKey(r)] {
				miss = append(miss, r.String())
			}
		}
		res := Result{Check: "permissions: " + string(f)}
		if len(miss) == 0 {
			res.Status, res.Detail = StatusOK, fmt.Sprintf("you may do the %d things it needs in namespace %s", checked, ns)
		} else {
			res.Status = StatusFail
			res.Detail = fmt.Sprintf("%d of %d missing in namespace %s: %s", len(miss), checked, ns, strings.Join(miss, ", "))
			res.Fix = fmt.Sprintf("ask for the %s Role in docs/intercept.md (\"Permissions tether needs\"), bound to you in namespace %s", roleFor(f), ns)
		}
		out = append(out, res)
	}
	return out
}

// roleFor names the Role in docs/intercept.md that grants feature f.
func roleFor(f access.Feature) string {
	switch f {
	case access.Inspect:
		return "tether-inspect"
	case access.Env, access.EnvSpec:
		return "tether-env"
	case access.Gateway:
		return "tether-run"
	}
	return "tether-user"
}

// ruleKey is r without its reason, to match rules across features.
func ruleKey(r access.Rule) access.Rule {
	r.Why = ""
	return r
}
