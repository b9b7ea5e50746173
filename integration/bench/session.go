package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// The session rows (issue 14): `tether session start` on a namespace of 50
// objects, and `session diff` and `session rollback` after every object
// changed, against kubectl diff and kubectl apply of the same manifests
// (the baseline a developer without sessions has, given the manifests).

// sessionObjects are the bench namespace's 50 objects, by kind.
var sessionObjects = []struct {
	kind string
	n    int
}{{"ConfigMap", 20}, {"Secret", 15}, {"Service", 10}, {"Deployment", 5}}

// sessionManifests returns the YAML of the 50 objects; each carries the
// label round=0, which the bench's changes overwrite.
func sessionManifests() string {
	var b strings.Builder
	for _, k := range sessionObjects {
		for i := range k.n {
			name := fmt.Sprintf("%s-%02d", strings.ToLower(k.kind), i)
			b.WriteString("---\n")
			switch k.kind {
			case "ConfigMap":
				fmt.Fprintf(&b, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s, labels: {round: \"0\"}}\ndata: {config.yaml: \"%s\"}\n", name, strings.Repeat("x", 2000))
			case "Secret":
				fmt.Fprintf(&b, "apiVersion: v1\nkind: Secret\nmetadata: {name: %s, labels: {round: \"0\"}}\nstringData: {password: p%d}\n", name, i)
			case "Service":
				fmt.Fprintf(&b, "apiVersion: v1\nkind: Service\nmetadata: {name: %s, labels: {round: \"0\"}}\nspec: {selector: {app: %s}, ports: [{port: 80, targetPort: 8080}]}\n", name, name)
			case "Deployment":
				fmt.Fprintf(&b, `apiVersion: apps/v1
kind: Deployment
metadata: {name: %[1]s, labels: {round: "0"}}
spec:
  replicas: 0
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata: {labels: {app: %[1]s}}
    spec:
      containers: [{name: app, image: "docker.io/tetherkube/tether-demo:dev"}]
`, name)
			}
		}
	}
	return b.String()
}

type sessionResults struct {
	objects                                   int
	start, diff, kubectlDiff, rollback, apply time.Duration
}

func measureSession(ctx context.Context, cs *kubernetes.Clientset, o options) (sessionResults, error) {
	var r sessionResults
	ns := o.namespace + "-session"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return r, err
	}
	defer cs.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	tmp, err := os.MkdirTemp("", "bench-session")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(tmp)
	manifests := filepath.Join(tmp, "objects.yaml")
	if err := os.WriteFile(manifests, []byte(sessionManifests()), 0o600); err != nil {
		return r, err
	}
	kubectl := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "kubectl", append(args, "--kubeconfig", o.kubeconfig, "-n", ns)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	timed := func(f func() error) (time.Duration, error) {
		start := time.Now()
		err := f()
		return time.Since(start), err
	}
	if out, err := kubectl("apply", "-f", manifests); err != nil {
		return r, fmt.Errorf("kubectl apply: %v: %s", err, out)
	}
	cli := tetherCLI{bin: o.tetherBin, kubeconfig: o.kubeconfig, namespace: ns, runtimeDir: tmp}
	defer cli.run(context.Background(), "quit")
	if _, err := cli.run(ctx, "connect"); err != nil {
		return r, err
	}
	// change makes every one of the 50 objects differ from the manifests.
	change := func(round int) error {
		if out, err := kubectl("label", "--overwrite", "configmaps,secrets,services,deployments", "--all", fmt.Sprintf("round=%d", round)); err != nil {
			return fmt.Errorf("kubectl label: %v: %s", err, out)
		}
		if out, err := kubectl("set", "image", "deployments", "--all", "app=tetherkube/tether-demo:dev"); err != nil {
			return fmt.Errorf("kubectl set image: %v: %s", err, out)
		}
		return nil
	}
	var starts, diffs, kdiffs, rollbacks, applies []time.Duration
	for round := 1; round <= o.rounds; round++ {
		d, err := timed(func() error { _, err := cli.run(ctx, "session", "start"); return err })
		if err != nil {
			return r, err
		}
		starts = append(starts, d)
		if err := change(round); err != nil {
			return r, err
		}
		var out string
		d, err = timed(func() (err error) { out, err = cli.run(ctx, "session", "diff", "-o", "json"); return err })
		if err != nil {
			return r, err
		}
		diffs = append(diffs, d)
		var got struct{ Changes []json.RawMessage }
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			return r, fmt.Errorf("session diff -o json: %w", err)
		}
		r.objects = len(got.Changes)
		if r.objects != 50 {
			return r, fmt.Errorf("session diff lists %d changed objects, want 50", r.objects)
		}
		// kubectl diff exits 1 when something differs.
		d, _ = timed(func() error { _, err := kubectl("diff", "-f", manifests); return err })
		kdiffs = append(kdiffs, d)
		d, err = timed(func() error { _, err := cli.run(ctx, "session", "rollback"); return err })
		if err != nil {
			return r, err
		}
		rollbacks = append(rollbacks, d)
		if _, err := cli.run(ctx, "session", "end"); err != nil {
			return r, err
		}
		if err := change(round); err != nil {
			return r, err
		}
		d, err = timed(func() error {
			out, err := kubectl("apply", "-f", manifests)
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		})
		if err != nil {
			return r, err
		}
		applies = append(applies, d)
	}
	r.start, r.diff, r.kubectlDiff = medianDuration(starts), medianDuration(diffs), medianDuration(kdiffs)
	r.rollback, r.apply = medianDuration(rollbacks), medianDuration(applies)
	return r, nil
}

func printSession(w io.Writer, r sessionResults, rounds int) {
	fmt.Fprintf(w, "\n== sessions: a namespace of 50 objects (20 ConfigMaps, 15 Secrets, 10 Services, 5 Deployments of 0 replicas), every one changed; medians of %d rounds\n", rounds)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "what\ttime\tbaseline\tratio\t")
	fmt.Fprintf(tw, "tether session start\t%s\t\t\t\n", r.start.Round(time.Millisecond))
	fmt.Fprintf(tw, "tether session diff -o json (%d objects)\t%s\tkubectl diff -f: %s\t%.2fx\t\n", r.objects, r.diff.Round(time.Millisecond),
		r.kubectlDiff.Round(time.Millisecond), ratio(r.diff, r.kubectlDiff))
	fmt.Fprintf(tw, "tether session rollback (restore, wait, verify)\t%s\tkubectl apply -f: %s\t%.2fx\t\n", r.rollback.Round(time.Millisecond),
		r.apply.Round(time.Millisecond), ratio(r.rollback, r.apply))
	tw.Flush()
}
