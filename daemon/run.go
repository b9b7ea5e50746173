package daemon

import (
	"github.com/tetherkube/tether/internal/resolvconf"
	daemonv1 "github.com/tetherkube/tether/proto/daemon/v1"
)

// RunRequest names the pod whose network a local process borrows.
type RunRequest struct {
	Namespace string `json:"namespace"`
	// Target is WORKLOAD (a ready pod of it is picked) or pod/NAME.
	Target     string `json:"target"`
	Container  string `json:"container,omitempty"`
	AgentImage string `json:"agentImage,omitempty"`
	// Proxy opens the SOCKS5 and HTTP proxies (the proxy mode).
	Proxy bool `json:"proxy,omitempty"`
	// Services are the NAME:PORT the run forwards to (--forward); the
	// daemon checks that each exists and has the port before it adds an
	// agent anywhere.
	Services []string `json:"services,omitempty"`
	// Path is how the run's connections reach the agent: auto (empty),
	// direct or port-forward (agent.Path).
	Path string `json:"path,omitempty"`
}

// RunInfo is a run ready to carry a process's connections.
type RunInfo struct {
	// ID names the run on the dial socket (DialRun); it is a secret
	// between the daemon and the process that started the run.
	ID         string `json:"-"`
	Namespace  string `json:"namespace"`
	Pod        string `json:"pod"`
	Container  string `json:"container"`
	PickedFrom string `json:"pickedFrom,omitempty"`
	// Via says which agent carries the connections.
	Via string `json:"via"`
	// ResolvConf is the pod's /etc/resolv.conf, parsed and as written.
	ResolvConf    resolvconf.Config `json:"resolvConf"`
	ResolvConfRaw []byte            `json:"-"`
	// The cluster's address ranges, and how each was found.
	ServiceCIDRs       []string `json:"serviceCIDRs"`
	ServiceCIDRsSource string   `json:"serviceCIDRsSource"`
	PodCIDRs           []string `json:"podCIDRs"`
	PodCIDRsSource     string   `json:"podCIDRsSource"`
	// DialSocket is the daemon's unix socket for DialRun.
	DialSocket string `json:"dialSocket"`
	// SOCKSAddr and HTTPAddr are the proxies on loopback (proxy mode);
	// both want ProxyUsername and ProxyPassword.
	SOCKSAddr     string `json:"socksAddr,omitempty"`
	HTTPAddr      string `json:"httpAddr,omitempty"`
	ProxyUsername string `json:"-"`
	ProxyPassword string `json:"-"`
	// Services are RunRequest.Services with each port as a number
	// ("db:5432" for "db:postgres"), in the same order.
	Services []string `json:"services,omitempty"`
	// Path is the path the run's connections take: direct or
	// port-forward.
	Path string `json:"path"`
}

func RunRequestToProto(r RunRequest) *daemonv1.RunRequest {
	return &daemonv1.RunRequest{Namespace: r.Namespace, Target: r.Target, Container: r.Container, AgentImage: r.AgentImage,
		Proxy: r.Proxy, Services: r.Services, Path: r.Path}
}

func RunRequestFromProto(p *daemonv1.RunRequest) RunRequest {
	return RunRequest{Namespace: p.GetNamespace(), Target: p.GetTarget(), Container: p.GetContainer(), AgentImage: p.GetAgentImage(),
		Proxy: p.GetProxy(), Services: p.GetServices(), Path: p.GetPath()}
}

func RunInfoToProto(r RunInfo) *daemonv1.RunInfo {
	rc := r.ResolvConf
	return &daemonv1.RunInfo{Id: r.ID, Namespace: r.Namespace, Pod: r.Pod, Container: r.Container, PickedFrom: r.PickedFrom, Via: r.Via,
		ResolvConf:    &daemonv1.ResolvConf{Nameservers: rc.Nameservers, Search: rc.Search, Ndots: int32(rc.Ndots), Options: rc.Options},
		ResolvConfRaw: r.ResolvConfRaw, ServiceCidrs: r.ServiceCIDRs, ServiceCidrsSource: r.ServiceCIDRsSource,
		PodCidrs: r.PodCIDRs, PodCidrsSource: r.PodCIDRsSource, DialSocket: r.DialSocket, SocksAddr: r.SOCKSAddr, HttpAddr: r.HTTPAddr,
		ProxyUsername: r.ProxyUsername, ProxyPassword: r.ProxyPassword, Services: r.Services, Path: r.Path}
}

func RunInfoFromProto(p *daemonv1.RunInfo) RunInfo {
	rc := p.GetResolvConf()
	return RunInfo{ID: p.GetId(), Namespace: p.GetNamespace(), Pod: p.GetPod(), Container: p.GetContainer(), PickedFrom: p.GetPickedFrom(),
		Via: p.GetVia(),
		ResolvConf: resolvconf.Config{Nameservers: rc.GetNameservers(), Search: rc.GetSearch(), Ndots: int(rc.GetNdots()),
			Options: rc.GetOptions()},
		ResolvConfRaw: p.GetResolvConfRaw(), ServiceCIDRs: p.GetServiceCidrs(), ServiceCIDRsSource: p.GetServiceCidrsSource(),
		PodCIDRs: p.GetPodCidrs(), PodCIDRsSource: p.GetPodCidrsSource(), DialSocket: p.GetDialSocket(), SOCKSAddr: p.GetSocksAddr(),
		HTTPAddr: p.GetHttpAddr(), ProxyUsername: p.GetProxyUsername(), ProxyPassword: p.GetProxyPassword(), Services: p.GetServices(), Path: p.GetPath()}
}
