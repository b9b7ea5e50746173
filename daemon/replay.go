package daemon

import (
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/tetherkube/tether/internal/errdefs"
	"github.com/tetherkube/tether/recording"
	"github.com/tetherkube/tether/replay"
)

// ReplayRequest is what to replay and where.
type ReplayRequest struct {
	// Namespace and Workload: needed for --to cluster (the requests leave
	// from one of its pods) and --to local (its intercept's local port).
	Namespace, Workload string
	Exchanges           []*recording.Exchange
	// Refs name the exchanges in results, in the same order (optional).
	Refs []string
	// To is "local", "local:PORT", "cluster" (the workload's own Service),
	// "cluster:HOST:PORT" (that address, from inside a pod of the
	// workload), "cluster:recorded" (the host each caller addressed), or an
	// http:// URL.
	To      string
	Options replay.Options
}

// Kinds of replay destinations ParseTo returns.
const (
	ToLocal           = "local"
	ToURL             = "url"
	ToClusterService  = "cluster"          // the workload's own Service
	ToClusterAddress  = "cluster-address"  // an address named by the user
	ToClusterRecorded = "cluster-recorded" // the host each caller addressed
)

// ParseTo reads --to; it returns the base URL for local, URL and
// cluster:HOST:PORT targets.
func ParseTo(to string) (kind string, base *url.URL, err error) {
	switch {
	case to == "cluster":
		return ToClusterService, nil, nil
	case to == "cluster:recorded":
		return ToClusterRecorded, nil, nil
	case strings.HasPrefix(to, "cluster:"):
		addr := strings.TrimPrefix(to, "cluster:")
		host, port, err := net.SplitHostPort(addr)
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			return "", nil, errdefs.User("--to %s: write cluster:HOST:PORT (e.g. cluster:payments.shop:8080), cluster for the workload's own Service, or cluster:recorded for the host each caller addressed", to)
		}
		return ToClusterAddress, &url.URL{Scheme: "http", Host: addr}, nil
	case to == "local":
		return ToLocal, nil, nil
	case strings.HasPrefix(to, "local:"):
		port, err := strconv.Atoi(strings.TrimPrefix(to, "local:"))
		if err != nil || port < 1 || port > 65535 {
			return "", nil, errdefs.User("--to %s: write local:PORT with a port from 1 to 65535", to)
		}
		return ToLocal, &url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}, nil
	case strings.HasPrefix(to, "http://") || strings.HasPrefix(to, "https://"):
		u, err := url.Parse(to)
		if err != nil || u.Host == "" {
			return "", nil, errdefs.User("--to %s is not a usable URL", to)
		}
		return ToURL, u, nil
	}
	return "", nil, errdefs.User("--to %q: write local (the intercept's port), local:PORT, cluster (the workload's Service), cluster:HOST:PORT, cluster:recorded, or an http:// URL", to)
}
