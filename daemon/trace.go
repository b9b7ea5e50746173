package daemon

import (
	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/daemon/internal/netpol"
	"github.com/tetherkube/tether/internal/resolvconf"
	agentv1 "github.com/tetherkube/tether/proto/agent/v1"
	daemonv1 "github.com/tetherkube/tether/proto/daemon/v1"
)

// TraceRequest names the source pod and the destination.
type TraceRequest struct {
	Namespace  string
	From, To   string
	AgentImage string
}

// TraceReportToProto and TraceReportFromProto carry a TraceReport.
func TraceReportToProto(r TraceReport) *daemonv1.TraceReport {
	p := &daemonv1.TraceReport{
		Source: &daemonv1.TraceSource{Pod: r.Source.Pod, Namespace: r.Source.Namespace, Ip: r.Source.IP, Node: r.Source.Node,
			PickedFrom: r.Source.PickedFrom},
		Target: &daemonv1.TraceTarget{Input: r.Target.Input, Kind: r.Target.Kind, Host: r.Target.Host, Namespace: r.Target.Namespace,
			Name: r.Target.Name, Port: r.Target.Port, Scheme: r.Target.Scheme, Path: r.Target.Path},
		FirstBroken: r.FirstBroken, Conclusion: r.Conclusion, DurationMillis: r.DurationMillis,
	}
	for _, st := range r.Steps {
		p.Steps = append(p.Steps, traceStepToProto(st))
	}
	return p
}

func TraceReportFromProto(p *daemonv1.TraceReport) TraceReport {
	s, t := p.GetSource(), p.GetTarget()
	r := TraceReport{
		Source: TraceSource{Pod: s.GetPod(), Namespace: s.GetNamespace(), IP: s.GetIp(), Node: s.GetNode(), PickedFrom: s.GetPickedFrom()},
		Target: TraceTarget{Input: t.GetInput(), Kind: t.GetKind(), Host: t.GetHost(), Namespace: t.GetNamespace(), Name: t.GetName(),
			Port: t.GetPort(), Scheme: t.GetScheme(), Path: t.GetPath()},
		FirstBroken: p.GetFirstBroken(), Conclusion: p.GetConclusion(), DurationMillis: p.GetDurationMillis(),
	}
	for _, st := range p.GetSteps() {
		r.Steps = append(r.Steps, traceStepFromProto(st))
	}
	return r
}

func traceStepToProto(s TraceStep) *daemonv1.TraceStep {
	p := &daemonv1.TraceStep{Name: s.Name, Status: string(s.Status), Summary: s.Summary, Details: s.Details}
	if d := s.DNS; d != nil {
		rc := d.ResolvConf
		p.Dns = &daemonv1.TraceDNS{Name: d.Name, Answered: d.Answered, Addresses: d.Addresses,
			ResolvConf: &daemonv1.ResolvConf{Nameservers: rc.Nameservers, Search: rc.Search, Ndots: int32(rc.Ndots), Options: rc.Options}}
		for _, q := range d.Queries {
			pq := &daemonv1.TraceQuery{Name: q.Name, Type: q.Type, Server: q.Server, Rcode: q.Rcode, Error: q.Error, LatencyMillis: q.Millis}
			for _, a := range q.Answers {
				pq.Answers = append(pq.Answers, &agentv1.DNSRecord{Name: a.Name, Type: a.Type, Ttl: a.TTL, Data: a.Data})
			}
			p.Dns.Queries = append(p.Dns.Queries, pq)
		}
	}
	if v := s.Service; v != nil {
		p.Service = &daemonv1.TraceService{Namespace: v.Namespace, Name: v.Name, Type: v.Type, ClusterIp: v.ClusterIP,
			ExternalName: v.ExternalName, Selector: v.Selector, SelectedPods: int32(v.SelectedPods)}
		if pm := v.Port; pm != nil {
			p.Service.Port = &daemonv1.TracePort{Name: pm.Name, Protocol: pm.Protocol, Port: pm.Port, TargetPort: pm.TargetPort,
				AppProtocol: pm.AppProtocol}
		}
		for _, e := range v.Endpoints {
			p.Service.Endpoints = append(p.Service.Endpoints, &daemonv1.TraceEndpoint{Address: e.Address, Port: e.Port, Pod: e.Pod,
				Namespace: e.Namespace, Node: e.Node, Ready: e.Ready, Serving: e.Serving, Terminating: e.Terminating, Reason: e.Reason})
		}
	}
	if pol := s.Policy; pol != nil {
		p.Policy = &daemonv1.TracePolicy{}
		for _, v := range pol.Verdicts {
			p.Policy.Verdicts = append(p.Policy.Verdicts, &daemonv1.TraceVerdict{Destination: v.Destination, Port: v.Port,
				Egress: directionToProto(v.Egress), Ingress: directionToProto(v.Ingress)})
		}
	}
	if pr := s.Probe; pr != nil {
		p.Probe = &daemonv1.TraceProbes{}
		for _, x := range pr.Probes {
			p.Probe.Probes = append(p.Probe.Probes, &daemonv1.TraceProbe{What: x.What, Address: x.Address, Pod: x.Pod,
				Connected: x.Connected, ConnectMillis: x.ConnectMillis, Error: x.Error, HttpStatus: int32(x.HTTPStatus),
				HttpMillis: x.HTTPMillis, HttpError: x.HTTPError})
		}
	}
	return p
}

func traceStepFromProto(p *daemonv1.TraceStep) TraceStep {
	s := TraceStep{Name: p.GetName(), Status: TraceStatus(p.GetStatus()), Summary: p.GetSummary(), Details: p.GetDetails()}
	if d := p.GetDns(); d != nil {
		rc := d.GetResolvConf()
		s.DNS = &TraceDNSResult{Name: d.GetName(), Answered: d.GetAnswered(), Addresses: d.GetAddresses(),
			ResolvConf: resolvconf.Config{Nameservers: rc.GetNameservers(), Search: rc.GetSearch(), Ndots: int(rc.GetNdots()),
				Options: rc.GetOptions()}}
		for _, pq := range d.GetQueries() {
			q := TraceQuery{Name: pq.GetName(), Type: pq.GetType(), Server: pq.GetServer(), Rcode: pq.GetRcode(), Error: pq.GetError(),
				Millis: pq.GetLatencyMillis()}
			for _, a := range pq.GetAnswers() {
				q.Answers = append(q.Answers, agent.DNSRecord{Name: a.GetName(), Type: a.GetType(), TTL: a.GetTtl(), Data: a.GetData()})
			}
			s.DNS.Queries = append(s.DNS.Queries, q)
		}
	}
	if v := p.GetService(); v != nil {
		s.Service = &TraceServiceResult{Namespace: v.GetNamespace(), Name: v.GetName(), Type: v.GetType(), ClusterIP: v.GetClusterIp(),
			ExternalName: v.GetExternalName(), Selector: v.GetSelector(), SelectedPods: int(v.GetSelectedPods())}
		if pm := v.GetPort(); pm != nil {
			s.Service.Port = &TracePortMapping{Name: pm.GetName(), Protocol: pm.GetProtocol(), Port: pm.GetPort(),
				TargetPort: pm.GetTargetPort(), AppProtocol: pm.GetAppProtocol()}
		}
		for _, e := range v.GetEndpoints() {
			s.Service.Endpoints = append(s.Service.Endpoints, TraceEndpoint{Address: e.GetAddress(), Port: e.GetPort(), Pod: e.GetPod(),
				Namespace: e.GetNamespace(), Node: e.GetNode(), Ready: e.GetReady(), Serving: e.GetServing(),
				Terminating: e.GetTerminating(), Reason: e.GetReason()})
		}
	}
	if pol := p.GetPolicy(); pol != nil {
		s.Policy = &TracePolicyResult{}
		for _, v := range pol.GetVerdicts() {
			s.Policy.Verdicts = append(s.Policy.Verdicts, TracePolicyVerdict{Destination: v.GetDestination(), Port: v.GetPort(),
				Decision: netpol.Decision{Egress: directionFromProto(v.GetEgress()), Ingress: directionFromProto(v.GetIngress())}})
		}
	}
	if pr := p.GetProbe(); pr != nil {
		s.Probe = &TraceProbeResult{}
		for _, x := range pr.GetProbes() {
			s.Probe.Probes = append(s.Probe.Probes, TraceProbe{What: x.GetWhat(), Address: x.GetAddress(), Pod: x.GetPod(),
				Connected: x.GetConnected(), ConnectMillis: x.GetConnectMillis(), Error: x.GetError(), HTTPStatus: int(x.GetHttpStatus()),
				HTTPMillis: x.GetHttpMillis(), HTTPError: x.GetHttpError()})
		}
	}
	return s
}

func directionToProto(v netpol.Verdict) *daemonv1.PolicyDirection {
	return &daemonv1.PolicyDirection{Allowed: v.Allowed, Selecting: v.Selecting, Rule: v.Rule, Reason: v.Reason}
}

func directionFromProto(p *daemonv1.PolicyDirection) netpol.Verdict {
	return netpol.Verdict{Allowed: p.GetAllowed(), Selecting: p.GetSelecting(), Rule: p.GetRule(), Reason: p.GetReason()}
}
