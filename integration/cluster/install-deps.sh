#!/usr/bin/env bash
# Installs, from Debian, what the local cluster and the tests need and a fresh
# Debian machine with Go lacks. Installs nothing when everything is present.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have runc || need+=(runc)
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
have iptables || need+=(iptables)
have ipset || need+=(ipset)
have conntrack || need+=(conntrack)
[ -f /usr/include/seccomp.h ] || need+=(libseccomp-dev)
have pkg-config || need+=(pkg-config)
have protoc || need+=(protobuf-compiler)
have gcc || need+=(gcc)
have git || need+=(git)
have tshark || need+=(tshark)
# tether run's tests run real clients under both network modes: curl, a
# Python script and a Java program (java Probe.java needs the JDK's javac).
have curl || need+=(curl)
# The namespace-mode tests compare the machine's interfaces and routes.
have ip || need+=(iproute2)
# Node 2 (NODES=2, make test-multinode) runs in namespaces of its own.
{ have nsenter && have unshare; } || need+=(util-linux)
# ... as an unprivileged user they create.
[ -x /usr/sbin/useradd ] || need+=(passwd)
have python3 || need+=(python3)
have javac || need+=(default-jdk-headless) # OpenJDK 17 on Debian 12, 21 on 13
# session report's HTML is opened in a real headless browser.
have chromium || need+=(chromium)

if [ ${#need[@]} -eq 0 ]; then
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "missing packages: ${need[*]}; install them as root (apt-get install ${need[*]})" >&2
	exit 1
fi
echo "installing from Debian: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
