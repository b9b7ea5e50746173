package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
)

// The mirror rows of the agent's cost (cost.go): this machine's end of a
// mirror, and what the copies became.

// mirrorCounts is what a mirror row's copies became: received by this
// machine's server, and the agent's counts.
type mirrorCounts struct {
	sent, received           int
	delivered, dropped, shed uint64
}

// agentUse is the agent container's CPU time per 1,000 requests in a row
// and its memory after it (and its peak since it started, where the
// kernel keeps one); ok false when its cgroup was not found.
type agentUse struct {
	cpuMsPer1000 float64
	memory, peak int64
	ok           bool
}

// copyServer is an HTTP server on this machine that counts the requests
// it answers: a mirror's laptop.
type copyServer struct {
	atomic.Int64
	port int
}

// copyCounter starts a copyServer; stop stops it.
func copyCounter() (c *copyServer, stop func(), err error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	c = &copyServer{port: l.Addr().(*net.TCPAddr).Port}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		c.Add(1)
		io.WriteString(w, "laptop")
	})}
	go srv.Serve(l)
	return c, func() { srv.Close() }, nil
}

// readMirrorCounts reads the one mirror's counts from `tether status`.
func readMirrorCounts(ctx context.Context, cli tetherCLI) (mirrorCounts, error) {
	out, err := cli.run(ctx, "status", "-o", "json")
	if err != nil {
		return mirrorCounts{}, err
	}
	var st struct {
		Daemon struct {
			Intercepts []struct {
				PortIntercepts []struct {
					Mirror                  bool
					Requests, Dropped, Shed uint64
				}
			}
		}
	}
	if i := strings.Index(out, "{"); i < 0 || json.Unmarshal([]byte(out[i:]), &st) != nil {
		return mirrorCounts{}, fmt.Errorf("status -o json: %s", out)
	}
	for _, ic := range st.Daemon.Intercepts {
		for _, p := range ic.PortIntercepts {
			if p.Mirror {
				return mirrorCounts{delivered: p.Requests, dropped: p.Dropped, shed: p.Shed}, nil
			}
		}
	}
	return mirrorCounts{}, fmt.Errorf("status lists no mirror: %s", out)
}
