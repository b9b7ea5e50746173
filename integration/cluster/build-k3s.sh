#!/usr/bin/env bash
# Builds k3s (the multi-call server binary, with its embedded containerd) and
# containerd-shim-runc-v2 from their Go modules at pinned versions.
#
# Each is built in its own throwaway module under $OUT/build so tether's go.mod
# never sees k3s's dependency graph. The module files are derived at build time
# from the pinned module's own go.mod and go.sum (k3s relies on its replace
# directives; the shim only compiles against containerd's own build list).
#
# usage: build-k3s.sh OUT_DIR     (writes OUT_DIR/bin/{k3s,containerd-shim-runc-v2,...})
set -euo pipefail

OUT=$(realpath -m "${1:?usage: build-k3s.sh OUT_DIR}")
K3S_VERSION=v1.32.0+k3s1
# The proxy serves the tag as this pseudo-version; pinning it keeps builds reproducible.
K3S_MODULE_VERSION=v1.32.1-0.20250107171309-cca8facaa33a
K3S_COMMIT=cca8facaa33a3ec7897349a8740fd96029590c31
SHIM_VERSION=v1.7.23-k3s2
TAGS="ctrd apparmor seccomp netcgo osusergo providerless urfave_cli_no_docs"

export GONOSUMDB=github.com/k3s-io # the checksum database has no entries for k3s's forks
export GOFLAGS=-mod=mod
export CGO_ENABLED=1

mkdir -p "$OUT/bin" "$OUT/build/k3s" "$OUT/build/shim"
modcache=$(go env GOMODCACHE)

# derive_module SRC_GO_MOD SRC_GO_SUM OLD_MODULE DIR EXTRA
derive_module() {
	if [ ! -f "$4/go.mod" ]; then
		sed -e "s#^module $3\$#module tether.local/build#" "$1" >"$4/go.mod"
		printf '%s\n' "$5" >>"$4/go.mod"
		cp "$2" "$4/go.sum"
		chmod u+w "$4/go.mod" "$4/go.sum"
	fi
}

if [ ! -x "$OUT/bin/k3s" ] || [ "$(cat "$OUT/bin/k3s.version" 2>/dev/null)" != "$K3S_VERSION" ]; then
	echo "building k3s $K3S_VERSION (cold: about 10 minutes and 1.2 GB of modules; warm: under a minute)"
	go mod download "github.com/k3s-io/k3s@$K3S_MODULE_VERSION"
	src="$modcache/github.com/k3s-io/k3s@$K3S_MODULE_VERSION"
	derive_module "$src/go.mod" "$src/go.sum" github.com/k3s-io/k3s "$OUT/build/k3s" \
		"require github.com/k3s-io/k3s $K3S_MODULE_VERSION"
	gover=$(go env GOVERSION)
	builddate=$(date -u '+%Y-%m-%dT%H:%M:%SZ')
	ldflags="-w -s
	 -X github.com/k3s-io/k3s/pkg/version.Version=$K3S_VERSION
	 -X github.com/k3s-io/k3s/pkg/version.GitCommit=${K3S_COMMIT:0:8}
	 -X github.com/k3s-io/k3s/pkg/version.UpstreamGolang=$gover
	 -X k8s.io/client-go/pkg/version.gitVersion=$K3S_VERSION
	 -X k8s.io/client-go/pkg/version.gitCommit=$K3S_COMMIT
	 -X k8s.io/client-go/pkg/version.gitTreeState=clean
	 -X k8s.io/client-go/pkg/version.buildDate=$builddate
	 -X k8s.io/component-base/version.gitVersion=$K3S_VERSION
	 -X k8s.io/component-base/version.gitCommit=$K3S_COMMIT
	 -X k8s.io/component-base/version.gitTreeState=clean
	 -X k8s.io/component-base/version.buildDate=$builddate
	 -X github.com/containerd/containerd/version.Version=$SHIM_VERSION
	 -X github.com/containerd/containerd/version.Package=github.com/k3s-io/containerd"
	(cd "$OUT/build/k3s" && go build -tags "$TAGS" -buildvcs=false -ldflags "$ldflags" \
		-o "$OUT/bin/k3s.tmp" github.com/k3s-io/k3s/cmd/server)
	mv "$OUT/bin/k3s.tmp" "$OUT/bin/k3s"
	echo "$K3S_VERSION" >"$OUT/bin/k3s.version"
fi

if [ ! -x "$OUT/bin/containerd-shim-runc-v2" ]; then
	echo "building containerd-shim-runc-v2 $SHIM_VERSION"
	go mod download "github.com/k3s-io/containerd@$SHIM_VERSION"
	src="$modcache/github.com/k3s-io/containerd@$SHIM_VERSION"
	derive_module "$src/go.mod" "$src/go.sum" github.com/containerd/containerd "$OUT/build/shim" \
		"require github.com/containerd/containerd v1.7.23
replace github.com/containerd/containerd => github.com/k3s-io/containerd $SHIM_VERSION"
	(cd "$OUT/build/shim" && go build -tags "${TAGS/netcgo/netgo}" -buildvcs=false \
		-ldflags "-w -s -X github.com/containerd/containerd/version.Version=$SHIM_VERSION -X github.com/containerd/containerd/version.Package=github.com/k3s-io/containerd" \
		-o "$OUT/bin/containerd-shim-runc-v2" github.com/containerd/containerd/cmd/containerd-shim-runc-v2)
fi

# The server binary is multi-call: these names select kubectl, crictl, ctr and containerd.
for name in kubectl crictl ctr containerd; do
	ln -sf k3s "$OUT/bin/$name"
done
