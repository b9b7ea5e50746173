// Package fakekube builds client-go fake clientsets that behave like an API
// server where tether's correctness depends on it: every stored object has a
// resourceVersion and a UID, an update whose resourceVersion is stale fails
// with a conflict, and a delete honours its UID and resourceVersion
// preconditions. client-go's fake tracker does none of that on its own.
package fakekube

import (
	"fmt"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// New returns a clientset holding objs, each given a resourceVersion and a
// UID, with optimistic concurrency enforced.
func New(objs ...runtime.Object) *fake.Clientset {
	var mu sync.Mutex
	next := 0
	version := func() string {
		next++
		return fmt.Sprint(next)
	}
	seeded := make([]runtime.Object, 0, len(objs))
	for _, o := range objs {
		o = o.DeepCopyObject()
		m, err := meta.Accessor(o)
		if err != nil {
			panic(err)
		}
		m.SetResourceVersion(version())
		if m.GetUID() == "" {
			m.SetUID(types.UID("uid-" + m.GetName() + "-" + m.GetResourceVersion()))
		}
		seeded = append(seeded, o)
	}
	cs := fake.NewSimpleClientset(seeded...)
	tracker := cs.Tracker()

	cs.PrependReactor("create", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		ca := a.(k8stesting.CreateAction)
		if ca.GetSubresource() != "" {
			return false, nil, nil
		}
		mu.Lock()
		defer mu.Unlock()
		o := ca.GetObject().DeepCopyObject()
		m, err := meta.Accessor(o)
		if err != nil {
			return false, nil, nil
		}
		m.SetResourceVersion(version())
		m.SetUID(types.UID("uid-" + m.GetName() + "-" + m.GetResourceVersion()))
		if err := tracker.Create(a.GetResource(), o, a.GetNamespace()); err != nil {
			return true, nil, err
		}
		return true, o, nil
	})
	cs.PrependReactor("update", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		ua := a.(k8stesting.UpdateAction)
		if ua.GetSubresource() != "" {
			return false, nil, nil
		}
		mu.Lock()
		defer mu.Unlock()
		o := ua.GetObject().DeepCopyObject()
		m, err := meta.Accessor(o)
		if err != nil {
			return false, nil, nil
		}
		cur, err := tracker.Get(a.GetResource(), a.GetNamespace(), m.GetName())
		if err != nil {
			return true, nil, err
		}
		cm, _ := meta.Accessor(cur)
		if rv := m.GetResourceVersion(); rv != "" && rv != cm.GetResourceVersion() {
			return true, nil, apierrors.NewConflict(a.GetResource().GroupResource(), m.GetName(),
				fmt.Errorf("the object has been modified; please apply your changes to the latest version and try again"))
		}
		m.SetUID(cm.GetUID())
		if DryRun(a) {
			m.SetResourceVersion(cm.GetResourceVersion())
			return true, o, nil // a dry run stores nothing
		}
		m.SetResourceVersion(version())
		if err := tracker.Update(a.GetResource(), o, a.GetNamespace()); err != nil {
			return true, nil, err
		}
		return true, o, nil
	})
	cs.PrependReactor("delete", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		da := a.(k8stesting.DeleteAction)
		mu.Lock()
		defer mu.Unlock()
		cur, err := tracker.Get(a.GetResource(), a.GetNamespace(), da.GetName())
		if err != nil {
			return true, nil, err
		}
		cm, _ := meta.Accessor(cur)
		if p := da.GetDeleteOptions().Preconditions; p != nil {
			if p.UID != nil && *p.UID != cm.GetUID() {
				return true, nil, apierrors.NewConflict(a.GetResource().GroupResource(), da.GetName(),
					fmt.Errorf("precondition failed: UID in precondition: %s, UID in object meta: %s", *p.UID, cm.GetUID()))
			}
			if p.ResourceVersion != nil && *p.ResourceVersion != cm.GetResourceVersion() {
				return true, nil, apierrors.NewConflict(a.GetResource().GroupResource(), da.GetName(),
					fmt.Errorf("precondition failed: ResourceVersion in precondition: %s, ResourceVersion in object meta: %s",
						*p.ResourceVersion, cm.GetResourceVersion()))
			}
		}
		return true, nil, tracker.Delete(a.GetResource(), a.GetNamespace(), da.GetName())
	})
	return cs
}

// DryRun tells whether a is an update made as a server-side dry run.
func DryRun(a k8stesting.Action) bool {
	ua, ok := a.(interface{ GetUpdateOptions() metav1.UpdateOptions })
	return ok && len(ua.GetUpdateOptions().DryRun) > 0
}

// Writes returns the verbs and resources of the actions that change
// something (create, update, patch, delete), as "verb resource/name".
func Writes(cs *fake.Clientset) []string {
	var out []string
	for _, a := range cs.Actions() {
		if DryRun(a) {
			continue // a dry run writes nothing
		}
		var name string
		switch a := a.(type) {
		case k8stesting.CreateAction:
			if m, err := meta.Accessor(a.GetObject()); err == nil {
				name = m.GetName()
			}
		case k8stesting.UpdateAction:
			if m, err := meta.Accessor(a.GetObject()); err == nil {
				name = m.GetName()
			}
		case k8stesting.DeleteAction:
			name = a.GetName()
		case k8stesting.PatchAction:
			name = a.GetName()
		default:
			continue
		}
		out = append(out, a.GetVerb()+" "+a.GetResource().Resource+"/"+name)
	}
	return out
}
