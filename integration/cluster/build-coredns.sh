#!/usr/bin/env bash
# Builds CoreDNS from its Go module, at the version k3s's bundled manifest
# expects, in its own throwaway module so tether's go.mod stays clean.
#
# usage: build-coredns.sh OUT_DIR     (writes OUT_DIR/bin/coredns)
set -euo pipefail

OUT=$(realpath -m "${1:?usage: build-coredns.sh OUT_DIR}")
COREDNS_VERSION=v1.12.0
COREDNS_COMMIT=51e11f16

if [ -x "$OUT/bin/coredns" ] && [ "$(cat "$OUT/bin/coredns.version" 2>/dev/null)" = "$COREDNS_VERSION" ]; then
	exit 0
fi
echo "building CoreDNS $COREDNS_VERSION"
mkdir -p "$OUT/bin" "$OUT/build/coredns"
cd "$OUT/build/coredns"
if [ ! -f go.mod ]; then
	go mod init tether.local/coredns >/dev/null 2>&1
	go get "github.com/coredns/coredns@$COREDNS_VERSION" >/dev/null
fi
CGO_ENABLED=0 go build -trimpath -buildvcs=false \
	-ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_COMMIT" \
	-o "$OUT/bin/coredns" github.com/coredns/coredns
echo "$COREDNS_VERSION" >"$OUT/bin/coredns.version"
