package session

import (
	"context"
	"fmt"
	"sort"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
)

// Client reads and writes a namespace's objects of Kinds.
type Client struct {
	Dyn dynamic.Interface
}

// Read returns the objects in scope in namespace, as the API server has
// them: every object of Kinds but tether's own and those Kubernetes keeps
// itself, or only the objects include names (absent ones are left out).
func (c Client) Read(ctx context.Context, namespace string, include []Ref) (map[Ref]*unstructured.Unstructured, error) {
	out := map[Ref]*unstructured.Unstructured{}
	if len(include) > 0 {
		for _, r := range include {
			k := kindByName(r.Kind)
			obj, err := c.Dyn.Resource(k.GVR).Namespace(namespace).Get(ctx, r.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("read %s in %s: %w", r, namespace, err)
			}
			out[r] = obj
		}
		return out, nil
	}
	for _, k := range Kinds {
		list, err := c.Dyn.Resource(k.GVR).Namespace(namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, fmt.Errorf("list the %s of %s: %w", k.GVR.Resource, namespace, err)
		}
		for i := range list.Items {
			obj := &list.Items[i]
			if ownedByTether(obj) || managedByKubernetes(k.Kind, obj) {
				continue
			}
			out[Ref{Kind: k.Kind, Name: obj.GetName()}] = obj
		}
	}
	return out, nil
}

// Normalized returns objs normalised, by Ref.
func Normalized(objs map[Ref]*unstructured.Unstructured) map[Ref]map[string]any {
	out := make(map[Ref]map[string]any, len(objs))
	for r, o := range objs {
		out[r] = Normalize(o.Object)
	}
	return out
}

// Take reads the objects in scope and returns them as a snapshot.
func (c Client) Take(ctx context.Context, namespace string, include []Ref) (*Snapshot, error) {
	objs, err := c.Read(ctx, namespace, include)
	if err != nil {
		return nil, err
	}
	snap := &Snapshot{}
	for r, o := range Normalized(objs) {
		snap.Objects = append(snap.Objects, Object{Ref: r, Object: o})
	}
	for _, r := range include {
		if _, ok := objs[r]; !ok {
			snap.Absent = append(snap.Absent, r)
		}
	}
	sortObjects(snap.Objects)
	return snap, nil
}

// ByRef returns the snapshot's objects by Ref.
func (s *Snapshot) ByRef() map[Ref]map[string]any {
	out := make(map[Ref]map[string]any, len(s.Objects))
	for _, o := range s.Objects {
		out[o.Ref] = o.Object
	}
	return out
}

func sortObjects(objs []Object) {
	sort.Slice(objs, func(i, j int) bool { return Less(objs[i].Ref, objs[j].Ref) })
}
