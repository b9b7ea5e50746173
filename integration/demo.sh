#!/usr/bin/env bash
# `make demo`: tether's main job on the local cluster (which `make` has
# already brought up): the pod's environment, a local command run as if in
# the pod, an intercept of a Service to this machine, leave, roll back. It deploys the orders app in namespace tether-demo and leaves it
# there to play with.
set -euo pipefail
cd "$(dirname "$0")/.."
export KUBECONFIG=${KUBECONFIG:-$PWD/.cluster/kubeconfig.yaml}
kubectl=.cluster/bin/kubectl
tether=bin/tether
ns=tether-demo

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

step "tether and the cluster it talks to"
show $tether version

step "deploy the orders demo service into namespace $ns"
$kubectl create namespace $ns --dry-run=client -o yaml | $kubectl apply -f - >/dev/null
$kubectl label namespace $ns pod-security.kubernetes.io/enforce=restricted --overwrite >/dev/null
show $kubectl -n $ns apply -f integration/manifests/orders.yaml
show $kubectl -n $ns rollout status deploy/orders --timeout=120s

# The Service answers once kube-proxy has programmed its endpoint, shortly after the rollout.
for _ in $(seq 1 40); do
	$kubectl -n $ns exec deploy/orders -c orders -- /tether-demo get http://orders/healthz >/dev/null 2>&1 && break
	sleep 0.5
done

step "a request from inside the cluster, through the Service's DNS name"
show $kubectl -n $ns exec deploy/orders -c orders -- /tether-demo get http://orders.$ns.svc.cluster.local/orders/7

step "the failing request, answered by the app in the cluster"
show $kubectl -n $ns exec deploy/orders -c orders -- /tether-demo post http://orders/orders/42/checkout

step "the container's environment as its process sees it (for your IDE's env file; secrets hidden on a terminal)"
show $tether env deploy/orders -n $ns

step "a command on this machine, as if in the pod: cluster names resolve, connections leave from the pod (no root, nothing changed here)"
show $tether run deploy/orders -n $ns -- bin/tether-demo get http://orders/whoami

step "start 'your code' on this machine (the same app, as it runs in your IDE) on localhost:3000"
POD_NAME=laptop bin/tether-demo serve 127.0.0.1:3000 >/dev/null 2>&1 &
local_pid=$!
trap 'kill $local_pid 2>/dev/null; $tether quit >/dev/null 2>&1 || true' EXIT
sleep 0.5

step "intercept: the orders Service's http port goes to localhost:3000"
show $tether intercept deploy/orders -n $ns --port http:3000
show $tether status

step "the same request from inside the cluster is now served by this machine (X-Served-By: laptop)"
show $kubectl -n $ns exec deploy/orders -c orders -- /tether-demo post http://orders/orders/42/checkout

step "the agent recorded that request: find the failing one"
show $tether requests list deploy/orders -n $ns --status 5xx
id=$($tether requests list deploy/orders -n $ns --status 5xx --limit 1 -o json | sed -n 's/.*"id": "\([^"]*\)".*/\1/p' | head -1)

step "fix the code (here: restart 'your code' with the fix), then replay the failing request to it and compare"
kill $local_pid 2>/dev/null; wait $local_pid 2>/dev/null || true
POD_NAME=laptop DEMO_FIXED=1 bin/tether-demo serve 127.0.0.1:3000 >/dev/null 2>&1 &
local_pid=$!
sleep 0.5
show $tether replay deploy/orders "$id" -n $ns --to local --diff --ignore-header X-Served-By || true

step "leave: the pods serve again, nothing restarts"
show $tether leave deploy/orders -n $ns
show $kubectl -n $ns exec deploy/orders -c orders -- /tether-demo get http://orders/whoami

step "rollback: the agent goes, the workload is exactly as before"
show $tether rollback deploy/orders -n $ns
show $kubectl -n $ns rollout status deploy/orders --timeout=120s
show $kubectl -n $ns get deploy/orders -o jsonpath='{.spec.template.spec.containers[*].name}{"\n"}'

printf '\nThe orders app stays in namespace %s; remove it with: %s delete namespace %s\n' "$ns" "$kubectl" "$ns"
printf 'KUBECONFIG=%s\n' "$KUBECONFIG"
