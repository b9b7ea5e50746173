package session

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/util/retry"

	"github.com/tetherkube/tether/internal/errdefs"
)

// Done is one step a rollback took.
type Done struct {
	Step
	// Note says what differs from the plan ("recreated with a new cluster
	// IP"), if anything.
	Note string
}

// Apply runs plan (no refused step left) against the cluster, calling
// progress before each step. It stops at the first error; running the
// rollback again computes a new plan from where it stopped.
func (c Client) Apply(ctx context.Context, namespace string, plan []Step, snap map[Ref]map[string]any,
	cur map[Ref]*unstructured.Unstructured, progress func(string)) ([]Done, error) {
	var done []Done
	scaled := Autoscaled(snap)
	for _, s := range plan {
		if s.Action == ActRefuse {
			return done, errdefs.FailedCheck("%s %s", s.Ref, s.Reason)
		}
		progress(fmt.Sprintf("%s %s", s.Action, s.Ref))
		d := Done{Step: s}
		res := c.Dyn.Resource(kindByName(s.Kind).GVR).Namespace(namespace)
		var err error
		switch s.Action {
		case ActUpdate:
			err = c.update(ctx, namespace, s.Ref, snap[s.Ref], cur[s.Ref], scaled[s.Ref])
		case ActCreate:
			d.Note, err = c.create(ctx, namespace, s.Ref, snap[s.Ref])
		case ActReplace:
			if err = c.deleteAndWait(ctx, namespace, s.Ref, cur[s.Ref]); err == nil {
				d.Note, err = c.create(ctx, namespace, s.Ref, snap[s.Ref])
			}
		case ActDelete:
			uid := cur[s.Ref].GetUID()
			err = res.Delete(ctx, s.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
			if apierrors.IsNotFound(err) {
				err = nil
			}
		}
		if err != nil {
			return done, fmt.Errorf("%s %s: %w", s.Action, s.Ref, err)
		}
		done = append(done, d)
	}
	return done, nil
}

// update restores obj over cur. A conflict (a controller wrote the
// object's status meanwhile) reads it again and retries; the object
// keeps its UID, so it is still the one the plan was made for. A workload
// an HPA scales (autoscaled) keeps its current replica count.
func (c Client) update(ctx context.Context, namespace string, r Ref, obj map[string]any, cur *unstructured.Unstructured, autoscaled bool) error {
	res := c.Dyn.Resource(kindByName(r.Kind).GVR).Namespace(namespace)
	uid := cur.GetUID()
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		u := restored(obj, namespace)
		u.SetResourceVersion(cur.GetResourceVersion())
		u.SetUID(uid)
		keepControllerAnnotations(u, cur.Object)
		keepClusterIPs(u, cur.Object)
		if autoscaled {
			if n, ok, _ := unstructured.NestedFieldCopy(cur.Object, "spec", "replicas"); ok {
				_ = unstructured.SetNestedField(u.Object, n, "spec", "replicas")
			}
		}
		_, err := res.Update(ctx, u, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			if fresh, gerr := res.Get(ctx, r.Name, metav1.GetOptions{}); gerr == nil {
				cur = fresh
			}
		}
		return err
	})
}

// restored is a snapshot object ready to send back.
func restored(obj map[string]any, namespace string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: runtime.DeepCopyJSON(obj)}
	u.SetNamespace(namespace)
	return u
}

// keepControllerAnnotations copies controllers' annotations from cur onto
// obj, so that restoring the rest does not erase them.
func keepControllerAnnotations(obj *unstructured.Unstructured, cur map[string]any) {
	keep := controllerAnnotationsOf(cur)
	if len(keep) == 0 {
		return
	}
	a := obj.GetAnnotations()
	if a == nil {
		a = map[string]string{}
	}
	for k, v := range keep {
		a[k] = v
	}
	obj.SetAnnotations(a)
}

// keepClusterIPs sets a Service's cluster IPs on obj from cur: allocated
// by the API server, they cannot change in place.
func keepClusterIPs(obj *unstructured.Unstructured, cur map[string]any) {
	if obj.GetKind() != "Service" {
		return
	}
	for _, f := range []string{"clusterIP", "clusterIPs"} {
		if v, ok, _ := unstructured.NestedFieldCopy(cur, "spec", f); ok {
			_ = unstructured.SetNestedField(obj.Object, v, "spec", f)
		} else {
			unstructured.RemoveNestedField(obj.Object, "spec", f)
		}
	}
}

// create creates a snapshot object again. A Service whose cluster IP was
// taken meanwhile is created with a new one, which the note says.
func (c Client) create(ctx context.Context, namespace string, r Ref, obj map[string]any) (string, error) {
	res := c.Dyn.Resource(kindByName(r.Kind).GVR).Namespace(namespace)
	u := restored(obj, namespace)
	_, err := res.Create(ctx, u, metav1.CreateOptions{})
	if err == nil || r.Kind != "Service" || !apierrors.IsInvalid(err) {
		if apierrors.IsAlreadyExists(err) {
			err = errdefs.User("%s exists again (someone created it during the rollback): run the rollback again", r)
		}
		return "", err
	}
	ip, _, _ := unstructured.NestedString(u.Object, "spec", "clusterIP")
	if ip == "" || ip == "None" {
		return "", err
	}
	unstructured.RemoveNestedField(u.Object, "spec", "clusterIP")
	unstructured.RemoveNestedField(u.Object, "spec", "clusterIPs")
	if _, err2 := res.Create(ctx, u, metav1.CreateOptions{}); err2 != nil {
		return "", fmt.Errorf("%w; without its old cluster IP: %w", err, err2)
	}
	return fmt.Sprintf("recreated with a new cluster IP (%s was taken)", ip), nil
}

// deleteAndWait deletes cur and waits until it is gone.
func (c Client) deleteAndWait(ctx context.Context, namespace string, r Ref, cur *unstructured.Unstructured) error {
	res := c.Dyn.Resource(kindByName(r.Kind).GVR).Namespace(namespace)
	uid := cur.GetUID()
	err := res.Delete(ctx, r.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	for {
		got, err := res.Get(ctx, r.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) || (err == nil && got.GetUID() != uid) {
			return nil
		}
		if err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Verify compares the cluster with snap field for field and returns what
// still differs.
func (c Client) Verify(ctx context.Context, namespace string, include []Ref, snap map[Ref]map[string]any) ([]Change, error) {
	cur, err := c.Read(ctx, namespace, include)
	if err != nil {
		return nil, err
	}
	return Compare(snap, Normalized(cur)), nil
}
