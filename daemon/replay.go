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
	// To is "local", "local:PORT", "cluster", or an http:// URL.
	To      string
	Options replay.Options
}

// ParseTo reads --to; it returns the base URL for local and URL targets.
func ParseTo(to string) (kind string, base *url.URL, err error) {
	switch {
	case to == "cluster":
		return "cluster", nil, nil
	case to == "local":
		return "local", nil, nil
	case strings.HasPrefix(to, "local:"):
		port, err := strconv.Atoi(strings.TrimPrefix(to, "local:"))
		if err != nil || port < 1 || port > 65535 {
			return "", nil, errdefs.User("--to %s: write local:PORT with a port from 1 to 65535", to)
		}
		return "local", &url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}, nil
	case strings.HasPrefix(to, "http://") || strings.HasPrefix(to, "https://"):
		u, err := url.Parse(to)
		if err != nil || u.Host == "" {
			return "", nil, errdefs.User("--to %s is not a usable URL", to)
		}
		return "url", u, nil
	}
	return "", nil, errdefs.User("--to %q: write local (the intercept's port), local:PORT, cluster, or an http:// URL", to)
}
