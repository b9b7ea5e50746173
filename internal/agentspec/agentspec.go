// Package agentspec holds the facts about tether's agent containers that
// both the daemon (which adds them) and the CLI (which checks a cluster
// for them: doctor, gather-logs) need: the names and labels tether puts on
// the cluster, and the security contexts the agents run with. The daemon's
// inject, inspect, gateway and journal packages build their objects from
// these; nothing here talks to a cluster.
package agentspec

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/tetherkube/tether/agent"
)

// DefaultCPULimit is the agent container's CPU limit when the user gives
// none (daemon/internal/inject explains the figure); `make bench` holds
// its agents to it too, as the kubelet would.
const DefaultCPULimit = "1"

// Names and labels tether puts on the objects it adds or changes.
const (
	// Container is the name of the agent's sidecar container (intercept,
	// record, the run gateway).
	Container = "tether-agent"
	// TokenVolume is the sidecar's volume holding its token Secret.
	TokenVolume = "tether-agent-token"
	// AgentAnnotation on a pod template marks it as changed by tether.
	AgentAnnotation = "tether.dev/agent"
	// LabelJournal marks a journal ConfigMap; LabelWorkloadKind and
	// LabelWorkloadName on it name the workload it journals.
	LabelJournal      = "tether.dev/journal"
	LabelWorkloadKind = "tether.dev/workload-kind"
	LabelWorkloadName = "tether.dev/workload-name"
	// LabelJournalKey marks the Secret holding a journal's key.
	LabelJournalKey = "tether.dev/journal-key"
	// LabelAgentToken marks the Secret holding an agent's token.
	LabelAgentToken = "tether.dev/agent-token"
	// LabelGateway marks the gateway Deployment tether creates for `tether
	// run` where no workload is named, and its pods.
	LabelGateway = "tether.dev/gateway"
	// LabelDoctor marks the short-lived test pod of `tether doctor`.
	LabelDoctor = "tether.dev/doctor"
	// LabelReadyProbe marks the short-lived pods that check an intercept's
	// readiness from nodes no intercepted pod runs on.
	LabelReadyProbe = "tether.dev/ready-probe"
)

// SecurityContext is the security context of every agent that needs no
// privilege (the sidecar, the gateway, inspection agents other than
// capture's): non-root, no capability, no privilege escalation, a
// read-only root, the runtime's default seccomp profile. It passes the
// "restricted" Pod Security level.
func SecurityContext() *corev1.SecurityContext {
	no, yes := false, true
	return &corev1.SecurityContext{
		RunAsNonRoot:             &yes,
		AllowPrivilegeEscalation: &no,
		ReadOnlyRootFilesystem:   &yes,
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// RootSecurityContext is the security context of an inspection agent that
// needs root: capture's (CAP_NET_RAW, which containerd and Docker grant
// root by default) and one reading a process that runs as root. It adds no
// capability explicitly, so the "baseline" Pod Security level allows it;
// "restricted" does not (it demands runAsNonRoot).
func RootSecurityContext() *corev1.SecurityContext {
	no, yes, root := false, true, int64(0)
	return &corev1.SecurityContext{
		RunAsUser:                &root,
		RunAsNonRoot:             &no,
		AllowPrivilegeEscalation: &no,
		ReadOnlyRootFilesystem:   &yes,
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

// PassiveRecordFlag is the agent flag that records from a copy of the
// pod's packets (`tether record --passive`); a sidecar with it runs with
// PassiveSecurityContext.
const PassiveRecordFlag = "--record-passive"

// PassiveSecurityContext is the security context of a sidecar that
// records from packets: capture's (RootSecurityContext), whose process,
// root, keeps the runtime's default capabilities, NET_RAW among them.
// Adding NET_RAW to a non-root user's container instead would give the
// process nothing (Kubernetes sets no ambient capabilities), and adding
// it to root's after dropping the rest passes only the "privileged" Pod
// Security level; this passes "baseline".
func PassiveSecurityContext() *corev1.SecurityContext { return RootSecurityContext() }

// Use is one kind of agent container tether adds and the features that
// add it.
type Use struct {
	// Agent says which container: "sidecar", "gateway", "ephemeral", ...
	Agent string
	// Features are the tether commands that add it.
	Features []string
	// SecurityContext is what the container asks for.
	SecurityContext *corev1.SecurityContext
}

// Uses lists every agent container tether adds, with its security context.
func Uses() []Use {
	return []Use{
		{Agent: "sidecar (in the workload's pods)", Features: []string{"intercept", "record"}, SecurityContext: SecurityContext()},
		{Agent: "gateway Deployment", Features: []string{"run (no workload)"}, SecurityContext: SecurityContext()},
		{Agent: "ephemeral inspection agent", Features: []string{"trace", "dns", "env", "run (a workload's pod)"}, SecurityContext: SecurityContext()},
		{Agent: "ephemeral inspection agent as root (NET_RAW)", Features: []string{"capture", "env and run for a process running as root"}, SecurityContext: RootSecurityContext()},
		{Agent: "sidecar recording from packets, as root (NET_RAW)", Features: []string{"record --passive", "intercept --mirror --passive"}, SecurityContext: PassiveSecurityContext()},
	}
}

// ProbePodTokenEnv is the environment variable holding a probe pod's token.
const ProbePodTokenEnv = "TETHER_TOKEN"

// ProbePodSpec is the spec of a short-lived pod that runs the agent alone,
// serving the probe job only (doctor's test pod, the readiness check's
// probe pods): the sidecar's security context (it passes "restricted"),
// no service account token, never restarted, ended by the kubelet after
// deadline seconds should its creator die before deleting it. token is
// in its environment (ProbePodTokenEnv); args are more agent arguments.
func ProbePodSpec(image string, token []byte, deadline int64, args ...string) corev1.PodSpec {
	no, grace := false, int64(0)
	return corev1.PodSpec{
		RestartPolicy:                 corev1.RestartPolicyNever,
		AutomountServiceAccountToken:  &no,
		EnableServiceLinks:            &no,
		ActiveDeadlineSeconds:         &deadline,
		TerminationGracePeriodSeconds: &grace,
		Containers: []corev1.Container{{
			Name:            Container,
			Image:           image,
			ImagePullPolicy: corev1.PullIfNotPresent,
			Args:            append([]string{"--token-env", ProbePodTokenEnv, "--serve", string(agent.JobProbe), "--no-record"}, args...),
			Env:             []corev1.EnvVar{{Name: ProbePodTokenEnv, Value: string(token)}},
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
				Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("200m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
			},
			TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
			SecurityContext:          SecurityContext(),
		}},
	}
}
