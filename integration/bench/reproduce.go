package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tetherkube/tether/recording"
)

// The reproduce row (issue 14): `tether reproduce` of 100 requests (the
// demo's failing checkout) to the orders Service, against the same 100
// requests sent by this process (the baseline) and by `tether replay
// --count 100`.

type reproduceResults struct {
	baseline, replay, reproduce time.Duration
	reproduced                  int
}

func measureReproduce(ctx context.Context, cs *kubernetes.Clientset, o options) (reproduceResults, error) {
	var r reproduceResults
	svc, err := cs.CoreV1().Services(o.namespace).Get(ctx, "orders", metav1.GetOptions{})
	if err != nil {
		return r, err
	}
	base := "http://" + svc.Spec.ClusterIP
	tmp, err := os.MkdirTemp("", "bench-reproduce")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(tmp)
	body := `{"coupon":"HALFOFF"}`
	file := filepath.Join(tmp, "failing.jsonl")
	f, err := os.Create(file)
	if err != nil {
		return r, err
	}
	err = recording.WriteJSONL(f, []*recording.Exchange{{ID: 1, Time: time.Now(), Request: recording.Message{Method: "POST",
		Target: "/orders/42/checkout", Host: "orders", Header: http.Header{"Content-Type": {"application/json"}},
		Body: []byte(body), BodySize: int64(len(body))}}})
	f.Close()
	if err != nil {
		return r, err
	}
	cli := tetherCLI{bin: o.tetherBin, kubeconfig: o.kubeconfig, namespace: o.namespace, runtimeDir: tmp}
	defer cli.run(context.Background(), "quit")
	if _, err := cli.run(ctx, "connect"); err != nil {
		return r, err
	}
	var base1, rep1, repro1 []time.Duration
	for range o.rounds {
		start := time.Now()
		client := &http.Client{}
		for range 100 {
			resp, err := client.Post(base+"/orders/42/checkout", "application/json", strings.NewReader(body))
			if err != nil {
				return r, err
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 500 {
				return r, fmt.Errorf("the failing checkout answered %d, want 500", resp.StatusCode)
			}
		}
		base1 = append(base1, time.Since(start))

		start = time.Now()
		if _, err := cli.run(ctx, "replay", "--from", file, "--to", base, "--count", "100"); err != nil {
			return r, err
		}
		rep1 = append(rep1, time.Since(start))

		start = time.Now()
		out, err := cli.cmd(ctx, "reproduce", "--from", file, "--to", base, "--count", "100", "--expect", "status=500",
			"--expect", "json:$.error", "-o", "json").Output()
		repro1 = append(repro1, time.Since(start))
		var rep struct{ Recurred int }
		if jerr := json.Unmarshal(out, &rep); jerr != nil {
			return r, fmt.Errorf("reproduce: %v (%v): %s", jerr, err, out)
		}
		r.reproduced = rep.Recurred
	}
	r.baseline, r.replay, r.reproduce = medianDuration(base1), medianDuration(rep1), medianDuration(repro1)
	return r, nil
}

func printReproduce(w io.Writer, r reproduceResults, rounds int) {
	fmt.Fprintf(w, "\n== reproduce: 100 requests (the failing checkout) to the orders Service from this machine; medians of %d rounds\n", rounds)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "what\ttime\tratio to baseline\t")
	fmt.Fprintf(tw, "100 POSTs from Go's http.Client (baseline)\t%s\t1.00x\t\n", r.baseline.Round(time.Millisecond))
	fmt.Fprintf(tw, "tether replay --count 100\t%s\t%.2fx\t\n", r.replay.Round(time.Millisecond), ratio(r.replay, r.baseline))
	fmt.Fprintf(tw, "tether reproduce --count 100 (status and JSON path; %d/100 reproduced)\t%s\t%.2fx\t\n", r.reproduced,
		r.reproduce.Round(time.Millisecond), ratio(r.reproduce, r.baseline))
	tw.Flush()
}
