package sessionreport

import (
	"net"
	"strconv"
	"strings"

	"github.com/tetherkube/tether/daemon"
)

// The traced path as a graph both diagrams draw: the source pod, the
// Service (or the destination), its endpoints, and on each hop what the
// trace found there. Labels are raw (recorded/cluster text): each
// renderer escapes them.

// State is how a node or edge fared.
type State string

const (
	StateOK     State = "ok"
	StateWarn   State = "warn"
	StateBroken State = "broken"
	StateNone   State = "none" // not checked
)

// Node is a box of the diagram.
type Node struct {
	ID    string // n0, n1, ...: never from data
	Kind  string // pod, service, endpoint
	Title string
	Lines []string
	State State
}

// Edge is an arrow between two nodes.
type Edge struct {
	From, To string
	Label    string
	State    State
}

// Graph is the path.
type Graph struct {
	Nodes []Node
	Edges []Edge
	// Broken names the first broken step ("" when healthy).
	Broken     string
	Conclusion string
}

// PathGraph builds the path's graph from a trace.
func PathGraph(t *daemon.TraceReport) Graph {
	g := Graph{Broken: t.FirstBroken, Conclusion: t.Conclusion}
	steps := map[string]daemon.TraceStep{}
	for _, s := range t.Steps {
		steps[s.Name] = s
	}
	src := Node{ID: "n0", Kind: "pod", Title: "pod " + t.Source.Pod, State: StateOK}
	if t.Source.IP != "" {
		src.Lines = append(src.Lines, t.Source.IP)
	}
	if t.Source.PickedFrom != "" {
		src.Lines = append(src.Lines, "of "+t.Source.PickedFrom)
	}
	g.Nodes = append(g.Nodes, src)

	svcStep, hasSvc := steps["service"]
	dst := Node{ID: "n1", Kind: "service", Title: t.Target.Input, State: state(svcStep.Status)}
	var endpoints []daemon.TraceEndpoint
	if v := svcStep.Service; hasSvc && v != nil {
		dst.Title = "svc " + v.Name
		if v.Namespace != "" && v.Namespace != t.Source.Namespace {
			dst.Title += "." + v.Namespace
		}
		if v.ClusterIP != "" {
			line := v.ClusterIP
			if v.Port != nil {
				line += ":" + strconv.Itoa(int(v.Port.Port)) + " -> " + v.Port.TargetPort
			}
			dst.Lines = append(dst.Lines, line)
		}
		dst.Lines = append(dst.Lines, strconv.Itoa(v.SelectedPods)+" pods selected")
		endpoints = v.Endpoints
	}
	g.Nodes = append(g.Nodes, dst)

	dnsLabel, dnsState := "connect", StateNone
	if s, ok := steps["dns"]; ok {
		dnsLabel, dnsState = "DNS "+string(s.Status), state(s.Status)
		if s.DNS != nil && len(s.DNS.Addresses) > 0 {
			dnsLabel = "DNS " + strings.Join(s.DNS.Addresses, ", ")
		}
	}
	// The probe of the Service's own address, if any, labels the same hop.
	var svcProbe *daemon.TraceProbe
	probes := map[string]daemon.TraceProbe{}
	verdicts := map[string]daemon.TracePolicyVerdict{}
	if s, ok := steps["probe"]; ok && s.Probe != nil {
		for i, pr := range s.Probe.Probes {
			if pr.What == "service" {
				svcProbe = &s.Probe.Probes[i]
				continue
			}
			probes[pr.Address] = pr
		}
	}
	if s, ok := steps["policy"]; ok && s.Policy != nil {
		for _, v := range s.Policy.Verdicts {
			verdicts[v.Destination] = v
		}
	}
	e := Edge{From: src.ID, To: dst.ID, Label: dnsLabel, State: dnsState}
	if svcProbe != nil {
		e.Label += "; " + probeText(*svcProbe)
		e.State = worst(e.State, probeState(*svcProbe))
	}
	g.Edges = append(g.Edges, e)

	for i, ep := range endpoints {
		n := Node{ID: "n" + strconv.Itoa(i+2), Kind: "endpoint", State: StateOK}
		addr := ep.Address
		if ep.Port != 0 {
			addr = net.JoinHostPort(ep.Address, strconv.Itoa(int(ep.Port)))
		}
		n.Title = addr
		if ep.Pod != "" {
			n.Title = "pod " + ep.Pod
			n.Lines = append(n.Lines, addr)
		}
		switch {
		case ep.Terminating:
			n.State, n.Lines = StateWarn, append(n.Lines, "terminating")
		case !ep.Ready:
			n.State = StateBroken
			n.Lines = append(n.Lines, "not ready "+ep.Reason)
		default:
			n.Lines = append(n.Lines, "ready")
		}
		g.Nodes = append(g.Nodes, n)

		edge := Edge{From: dst.ID, To: n.ID, State: StateNone}
		var parts []string
		dest := ep.Address
		if ep.Pod != "" {
			dest = "pod " + ep.Pod
		}
		if v, ok := verdicts[dest]; ok {
			if v.Allowed() {
				parts, edge.State = append(parts, "policy allows"), StateOK
			} else {
				denied := "policy DENIES"
				if by := deniedBy(v); by != "" {
					denied += " (" + by + ")"
				}
				parts, edge.State = append(parts, denied), StateBroken
			}
		}
		if pr, ok := probes[addr]; ok {
			parts = append(parts, probeText(pr))
			edge.State = worst(edge.State, probeState(pr))
		}
		edge.Label = strings.Join(parts, "; ")
		g.Edges = append(g.Edges, edge)
	}
	return g
}

// deniedBy names the policies behind a denied verdict, for the text.
func deniedBy(v daemon.TracePolicyVerdict) string {
	var names []string
	if !v.Egress.Allowed {
		names = append(names, v.Egress.Selecting...)
	}
	if !v.Ingress.Allowed {
		names = append(names, v.Ingress.Selecting...)
	}
	return strings.Join(names, ", ")
}

func probeText(pr daemon.TraceProbe) string {
	switch {
	case !pr.Connected:
		if pr.Error != "" {
			return "connect failed: " + pr.Error
		}
		return "connect failed"
	case pr.HTTPStatus != 0:
		return "HTTP " + strconv.Itoa(pr.HTTPStatus)
	case pr.HTTPError != "":
		return "HTTP failed: " + pr.HTTPError
	}
	return "connected"
}

func probeState(pr daemon.TraceProbe) State {
	switch {
	case !pr.Connected || pr.HTTPError != "":
		return StateBroken
	case pr.HTTPStatus >= 500:
		return StateWarn
	}
	return StateOK
}

func state(s daemon.TraceStatus) State {
	switch s {
	case daemon.TraceOK:
		return StateOK
	case daemon.TraceWarn:
		return StateWarn
	case daemon.TraceBroken:
		return StateBroken
	}
	return StateNone
}

func worst(a, b State) State {
	rank := map[State]int{StateNone: 0, StateOK: 1, StateWarn: 2, StateBroken: 3}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

func itoa(n int) string { return strconv.Itoa(n) }
