package runcmd

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"

	"github.com/tetherkube/tether/daemon"
)

// ProxyEnv is what a process needs to send its connections through the
// run's proxies: the variables most HTTP clients read (curl, Go, Python,
// Ruby, Node with NODE_USE_ENV_PROXY), SOCKS5 for the JVM, whose
// socksProxy properties carry every socket (names resolved in the pod
// when the program leaves them unresolved), and the TETHER_* variables
// saying where the process runs.
func ProxyEnv(info daemon.RunInfo) []string {
	cred := url.UserPassword(info.ProxyUsername, info.ProxyPassword)
	httpURL := (&url.URL{Scheme: "http", User: cred, Host: info.HTTPAddr}).String()
	socksURL := (&url.URL{Scheme: "socks5h", User: cred, Host: info.SOCKSAddr}).String()
	host, port, _ := net.SplitHostPort(info.SOCKSAddr)
	noProxy := "localhost,127.0.0.1,::1"
	// The JDK's SOCKS5 client sends user.name and no password unless the
	// program sets an Authenticator (it ignores java.net.socks.username and
	// .password, kept for the libraries that read them), so user.name
	// carries the password, which the proxy accepts as the username alone.
	java := fmt.Sprintf("-DsocksProxyHost=%s -DsocksProxyPort=%s -Djava.net.socks.username=%s -Djava.net.socks.password=%s -Duser.name=%s",
		host, port, info.ProxyUsername, info.ProxyPassword, info.ProxyPassword)
	if prev := os.Getenv("JAVA_TOOL_OPTIONS"); prev != "" {
		java = prev + " " + java
	}
	env := []string{
		"HTTP_PROXY=" + httpURL, "http_proxy=" + httpURL,
		"HTTPS_PROXY=" + httpURL, "https_proxy=" + httpURL,
		"ALL_PROXY=" + socksURL, "all_proxy=" + socksURL,
		"NO_PROXY=" + noProxy, "no_proxy=" + noProxy,
		"JAVA_TOOL_OPTIONS=" + java,
		"NODE_USE_ENV_PROXY=1",
		"TETHER_NETWORK=proxy",
		"TETHER_PROXY_HTTP=" + info.HTTPAddr,
		"TETHER_PROXY_SOCKS=" + info.SOCKSAddr,
	}
	return append(env, TetherEnv(info)...)
}

// TetherEnv says what the process runs as, in either network mode.
func TetherEnv(info daemon.RunInfo) []string {
	return []string{
		"TETHER_POD=" + info.Pod,
		"TETHER_NAMESPACE=" + info.Namespace,
		"TETHER_CONTAINER=" + info.Container,
		"TETHER_SERVICE_CIDRS=" + strings.Join(info.ServiceCIDRs, ","),
		"TETHER_POD_CIDRS=" + strings.Join(info.PodCIDRs, ","),
	}
}

// Merge returns base with each NAME=VALUE of set replacing the variable
// of that name, or appended.
func Merge(base []string, set ...[]string) []string {
	out := append([]string(nil), base...)
	index := map[string]int{}
	for i, kv := range out {
		k, _, _ := strings.Cut(kv, "=")
		index[k] = i
	}
	for _, list := range set {
		for _, kv := range list {
			k, _, _ := strings.Cut(kv, "=")
			if i, ok := index[k]; ok {
				out[i] = kv
				continue
			}
			index[k] = len(out)
			out = append(out, kv)
		}
	}
	return out
}
