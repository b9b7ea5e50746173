package session

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/tetherkube/tether/internal/errdefs"
)

// WaitRollouts waits until every workload of refs has rolled out (all its
// replicas updated and available, no old ones left), calling progress with
// what it waits for when that changes, or every 10 s.
func (c Client) WaitRollouts(ctx context.Context, namespace string, refs []Ref, timeout time.Duration, progress func(string)) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for _, r := range refs {
		k := kindByName(r.Kind)
		if !k.Workload {
			continue
		}
		last, lastAt := "", time.Time{}
		for {
			obj, err := c.Dyn.Resource(k.GVR).Namespace(namespace).Get(ctx, r.Name, metav1.GetOptions{})
			if err != nil {
				if ctx.Err() != nil {
					return errdefs.Unavailable("%s did not roll out within %s: %s", r, timeout, last)
				}
				return fmt.Errorf("read %s: %w", r, err)
			}
			pending := rolloutPending(obj)
			if pending == "" {
				progress(fmt.Sprintf("%s rolled out (%s)", r, time.Since(start).Round(time.Second)))
				break
			}
			if pending != last || time.Since(lastAt) >= 10*time.Second {
				progress(fmt.Sprintf("waiting for %s: %s (%s)", r, pending, time.Since(start).Round(time.Second)))
				last, lastAt = pending, time.Now()
			}
			select {
			case <-ctx.Done():
				return errdefs.Unavailable("%s did not roll out within %s: %s; run the rollback again to wait longer", r, timeout, last)
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
	return nil
}

// rolloutPending says what obj's rollout still waits for, "" when done.
func rolloutPending(obj *unstructured.Unstructured) string {
	o := obj.Object
	num := func(path ...string) int64 {
		v, _, _ := unstructured.NestedInt64(o, path...)
		return v
	}
	if num("status", "observedGeneration") < obj.GetGeneration() {
		return "its controller has not seen the change yet"
	}
	switch obj.GetKind() {
	case "Deployment", "StatefulSet":
		want := int64(1)
		if v, ok, _ := unstructured.NestedInt64(o, "spec", "replicas"); ok {
			want = v
		}
		updated, ready := num("status", "updatedReplicas"), num("status", "readyReplicas")
		total := num("status", "replicas")
		avail := num("status", "availableReplicas")
		if obj.GetKind() == "StatefulSet" {
			cur, _, _ := unstructured.NestedString(o, "status", "currentRevision")
			upd, _, _ := unstructured.NestedString(o, "status", "updateRevision")
			if upd != "" && cur != upd {
				return fmt.Sprintf("%d of %d replicas updated, %d ready", updated, want, ready)
			}
			avail = ready
		}
		if updated < want || total > want || avail < want {
			return fmt.Sprintf("%d of %d replicas updated, %d available, %d in all", updated, want, avail, total)
		}
	case "DaemonSet":
		want := num("status", "desiredNumberScheduled")
		updated, avail := num("status", "updatedNumberScheduled"), num("status", "numberAvailable")
		if updated < want || avail < want {
			return fmt.Sprintf("%d of %d pods updated, %d available", updated, want, avail)
		}
	}
	return ""
}
