package clusternet

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func TestCover(t *testing.T) {
	tests := []struct {
		name string
		ips  []string
		want []string
	}{
		{"none", nil, nil},
		{"one address gives the widest prefix allowed", []string{"10.43.0.10"}, []string{"10.43.0.0/16"}},
		{"spread addresses", []string{"10.43.0.10", "10.43.200.1", "10.42.0.5"}, []string{"10.42.0.0/15"}},
		{"both families", []string{"10.43.0.1", "fd00:10:43::1", "fd00:10:43::ff"}, []string{"10.43.0.0/16", "fd00:10:43::/64"}},
		{"garbage is skipped", []string{"None", "10.43.1.1"}, []string{"10.43.0.0/16"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, Cover(tt.ips, 16, 64)); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

func pod(name, ip string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name},
		Status: corev1.PodStatus{PodIPs: []corev1.PodIP{{IP: ip}}}}
}

func svc(name, ip string) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name}, Spec: corev1.ServiceSpec{ClusterIPs: []string{ip}}}
}

// refuse makes the fake refuse verb on resource, as RBAC would.
func refuse(cs *fake.Clientset, verb, resource string) {
	cs.PrependReactor(verb, resource, func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New(resource + " is forbidden: User cannot " + verb)
	})
}

func TestFind(t *testing.T) {
	t.Run("from the dry run's refusal and the nodes", func(t *testing.T) {
		cs := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Spec: corev1.NodeSpec{PodCIDRs: []string{"10.42.0.0/24"}}})
		cs.PrependReactor("create", "services", func(a k8stesting.Action) (bool, runtime.Object, error) {
			s := a.(k8stesting.CreateAction).GetObject().(*corev1.Service)
			if strings.Contains(s.Spec.ClusterIP, ":") {
				return true, nil, errors.New("spec.clusterIPs[0]: Invalid value: IPv6 is not configured on this cluster")
			}
			return true, nil, errors.New(`Service "x" is invalid: spec.clusterIPs: Invalid value: []string{"203.0.113.1"}: failed to allocate IP 203.0.113.1: the provided IP (203.0.113.1) is not in the valid range. The range of valid IPs is 10.43.0.0/16`)
		})
		r, err := Find(context.Background(), cs, "shop")
		if err != nil {
			t.Fatal(err)
		}
		want := Ranges{Services: []string{"10.43.0.0/16"}, ServicesSource: "the range the API server named for a dry-run Service",
			Pods: []string{"10.42.0.0/24"}, PodsSource: "the spec.podCIDRs of 1 nodes"}
		if diff := cmp.Diff(want, r); diff != "" {
			t.Errorf("(-want +got)\n%s", diff)
		}
	})
	t.Run("from what the user may list in the namespace", func(t *testing.T) {
		cs := fake.NewClientset(svc("a", "10.43.5.1"), svc("b", "10.43.99.2"), pod("p", "10.42.0.7"), pod("q", "10.42.0.9"))
		refuse(cs, "create", "services")
		refuse(cs, "list", "nodes")
		cs.PrependReactor("list", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
			if a.GetNamespace() == "" && (a.GetResource().Resource == "pods" || a.GetResource().Resource == "services") {
				return true, nil, errors.New("forbidden: cluster-wide list")
			}
			return false, nil, nil
		})
		r, err := Find(context.Background(), cs, "shop")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"10.43.0.0/16"}, r.Services); diff != "" {
			t.Errorf("services (-want +got)\n%s", diff)
		}
		if diff := cmp.Diff([]string{"10.42.0.0/16"}, r.Pods); diff != "" {
			t.Errorf("pods (-want +got)\n%s", diff)
		}
		if !strings.Contains(r.ServicesSource, "covering the ClusterIPs of 2 Services in namespace shop") ||
			!strings.Contains(r.PodsSource, "covering the IPs of 2 pods in namespace shop") {
			t.Errorf("sources %q / %q do not say what was used", r.ServicesSource, r.PodsSource)
		}
	})
}
