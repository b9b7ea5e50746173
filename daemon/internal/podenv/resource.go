package podenv

import (
	"math"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// startedAt is when the container last started, zero when unknown.
func (r *resolver) startedAt() time.Time {
	for _, cs := range [][]corev1.ContainerStatus{r.pod.Status.ContainerStatuses, r.pod.Status.InitContainerStatuses} {
		for _, s := range cs {
			if s.Name == r.container.Name && s.State.Running != nil {
				return s.State.Running.StartedAt.Time
			}
		}
	}
	return time.Time{}
}

// resourceValue is a resourceFieldRef's value: the container's request or
// limit divided by the divisor, rounded up. A limit the container does not
// set is the node's allocatable amount, as the kubelet reads it when the
// container starts; tether reads it now, and says so.
func (r *resolver) resourceValue(name string, ref *corev1.ResourceFieldSelector) (string, bool, error) {
	c := r.container
	if ref.ContainerName != "" && ref.ContainerName != c.Name {
		if c = findContainer(r.pod, ref.ContainerName); c == nil {
			r.warnf("%s: resourceFieldRef names container %q, which the pod does not have: left out", name, ref.ContainerName)
			return "", false, nil
		}
	}
	kind, res, ok := strings.Cut(ref.Resource, ".")
	if !ok || (kind != "limits" && kind != "requests") {
		r.warnf("%s: resourceFieldRef %q is not a resource tether knows: left out", name, ref.Resource)
		return "", false, nil
	}
	rn := corev1.ResourceName(res)
	list := c.Resources.Requests
	if kind == "limits" {
		list = c.Resources.Limits
	}
	q, set := list[rn]
	if kind == "limits" && (!set || q.IsZero()) && !strings.HasPrefix(res, "hugepages-") {
		alloc, err := r.allocatable(name, rn)
		if err != nil || alloc == nil {
			return "", false, err
		}
		q = *alloc
	}
	divisor := ref.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	if rn == corev1.ResourceCPU {
		return strconv.FormatInt(int64(math.Ceil(float64(q.MilliValue())/float64(divisor.MilliValue()))), 10), true, nil
	}
	return strconv.FormatInt(int64(math.Ceil(float64(q.Value())/float64(divisor.Value()))), 10), true, nil
}

// allocatable reads the node's allocatable amount of rn; nil, with a
// warning, when the node cannot be read.
func (r *resolver) allocatable(name string, rn corev1.ResourceName) (*resource.Quantity, error) {
	node, err := r.lookup.Node(r.ctx, r.pod.Spec.NodeName)
	if err != nil {
		r.warnf("%s: the container sets no %s limit, so the kubelet gave it node %s's allocatable %s, which tether cannot read (%v): left out",
			name, rn, r.pod.Spec.NodeName, rn, err)
		return nil, nil
	}
	q, ok := node.Status.Allocatable[rn]
	if !ok {
		r.warnf("%s: node %s reports no allocatable %s: left out", name, r.pod.Spec.NodeName, rn)
		return nil, nil
	}
	r.warnf("%s: the container sets no %s limit: the value is node %s's allocatable %s now, which may differ from when the container started",
		name, rn, r.pod.Spec.NodeName, rn)
	return &q, nil
}
