package trace

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"

	corev1 "k8s.io/api/core/v1"

	"github.com/tetherkube/tether/agent"
)

// probe connects from the source pod to the Service address and to each
// endpoint, in parallel, with an HTTP request where the destination speaks
// HTTP.
func (tr *Tracer) probe(ctx context.Context, s *state) (Step, error) {
	type target struct {
		what, address, pod string
		ready              bool
	}
	var targets []target
	if s.svc != nil && s.svcPort != nil && s.svc.Spec.ClusterIP != "" && s.svc.Spec.ClusterIP != corev1.ClusterIPNone {
		targets = append(targets, target{what: "service", address: net.JoinHostPort(s.svc.Spec.ClusterIP, strconv.Itoa(int(s.svcPort.Port))), ready: true})
	}
	for _, e := range s.endpoints {
		if e.Port == 0 {
			continue
		}
		what := "endpoint"
		if s.svc == nil && e.Pod == "" {
			what = "address"
		}
		targets = append(targets, target{what: what, address: net.JoinHostPort(e.Address, strconv.Itoa(int(e.Port))), pod: e.Pod, ready: e.Ready})
	}
	if len(targets) == 0 {
		if len(s.addresses) > 0 && s.target.Port == "" {
			return skipped("no port given: write NAME:PORT or a URL to probe a connection"), nil
		}
		return skipped("nothing to probe"), nil
	}
	res := &ProbeResult{Probes: make([]Probe, len(targets))}
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := tr.Prober.Probe(ctx, agent.ProbeRequest{Address: t.address, Timeout: tr.Timeout, HTTP: s.http})
			errs[i] = err
			res.Probes[i] = Probe{What: t.what, Address: t.address, Pod: t.pod, Connected: r.Connected, ConnectMillis: millis(r.Connect),
				Error: r.Error, HTTPStatus: r.HTTPStatus, HTTPMillis: millis(r.HTTPLatency), HTTPError: r.HTTPError}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return Step{}, err
		}
	}
	step := Step{Probe: res, Status: OK}
	anyConnected, readyFailed := false, 0
	var main *Probe
	for i, p := range res.Probes {
		step.Details = append(step.Details, probeLine(p, s.http))
		if p.Connected {
			anyConnected = true
		}
		if p.What == "service" {
			main = &res.Probes[i]
		} else if targets[i].ready && !p.Connected {
			readyFailed++
		}
	}
	if main == nil {
		// No Service address: the path works when a ready destination answers.
		for i, p := range res.Probes {
			if targets[i].ready && (main == nil || p.Connected) {
				main = &res.Probes[i]
			}
		}
		if main == nil {
			main = &res.Probes[0]
		}
	}
	switch {
	case !main.Connected:
		step.Status = Broken
		step.Summary = fmt.Sprintf("%s %s: connection %s", main.What, main.Address, main.Error)
		if !s.policyDenies && main.Error == "refused" {
			step.Details = append(step.Details, "refused although no policy denies it: nothing listens there, or the Service's rules are not programmed on the node yet")
		}
	case s.http != nil && main.HTTPError != "":
		step.Status = Broken
		step.Summary = fmt.Sprintf("%s %s connected, but the HTTP request failed: %s", main.What, main.Address, main.HTTPError)
	case s.http != nil && main.HTTPStatus >= 500:
		step.Status = Warn
		step.Summary = fmt.Sprintf("%s %s answered HTTP %d", main.What, main.Address, main.HTTPStatus)
	case readyFailed > 0:
		step.Status = Warn
		step.Summary = fmt.Sprintf("%s %s connected, but %d ready %s did not", main.What, main.Address, readyFailed, plural(readyFailed, "endpoint"))
	default:
		step.Summary = fmt.Sprintf("%s %s connected in %s", main.What, main.Address, durationText(main.ConnectMillis))
		if s.http != nil {
			step.Summary += fmt.Sprintf(", HTTP %d in %s", main.HTTPStatus, durationText(main.HTTPMillis))
		}
	}
	if s.policyDenies && anyConnected {
		step.Details = append(step.Details, "the NetworkPolicies deny this connection, yet the probe connected: the cluster's network plugin may not enforce NetworkPolicies")
		if step.Status == OK {
			step.Status = Warn
		}
	}
	return step, nil
}

func probeLine(p Probe, http *agent.HTTPProbe) string {
	who := p.What + " " + p.Address
	if p.Pod != "" {
		who += " (pod " + p.Pod + ")"
	}
	if !p.Connected {
		return fmt.Sprintf("%s: tcp %s after %s", who, p.Error, durationText(p.ConnectMillis))
	}
	line := fmt.Sprintf("%s: tcp connected in %s", who, durationText(p.ConnectMillis))
	switch {
	case http == nil:
	case p.HTTPError != "":
		line += "; HTTP failed: " + p.HTTPError
	default:
		path := http.Path
		if path == "" {
			path = "/"
		}
		line += fmt.Sprintf("; GET %s -> %d in %s", path, p.HTTPStatus, durationText(p.HTTPMillis))
	}
	return line
}
