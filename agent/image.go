package agent

import "fmt"

// ImagePullFailures are the kubelet's waiting reasons for an image it
// cannot get.
var ImagePullFailures = map[string]bool{"ErrImagePull": true, "ImagePullBackOff": true, "ErrImageNeverPull": true}

// ImageLoadHint says how to get the agent image into a cluster whose nodes
// cannot pull it: the release's OCI tarball, loaded the way each kind of
// local cluster loads images, or a copy in a registry the nodes reach.
func ImageLoadHint(image string) string {
	return fmt.Sprintf("the nodes cannot pull %s. Where no registry is reachable, load the agent image from tether's release "+
		"(tether-agent_VERSION_oci.tar, beside the CLI's archives): k3s: `k3s ctr images import FILE`; kind: `kind load image-archive FILE`; "+
		"minikube: `minikube image load FILE`; any containerd node: `ctr -n k8s.io images import --all-platforms FILE`. "+
		"Or push it to a registry your nodes can pull from and pass --agent-image REGISTRY/tether-agent:VERSION", image)
}
