package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tetherkube/tether/agent"
	"github.com/tetherkube/tether/recording"
)

// TestJobsRefuseOtherCalls: an agent started with --serve answers the
// calls of its jobs and refuses every other one with agent.ErrNotServed;
// dial streams are refused with a reason. A capture agent (root, NET_RAW)
// thus sends no probe and no connection from the pod; a trace agent
// captures nothing.
func TestJobsRefuseOtherCalls(t *testing.T) {
	calls := map[string]func(context.Context, *agent.Link, *agent.Client, int) error{
		"Probe": func(ctx context.Context, _ *agent.Link, c *agent.Client, port int) error {
			_, err := c.Probe(ctx, agent.ProbeRequest{Address: fmt.Sprintf("127.0.0.1:%d", port)})
			return err
		},
		"QueryDNS": func(ctx context.Context, _ *agent.Link, c *agent.Client, _ int) error {
			_, err := c.QueryDNS(ctx, agent.DNSQuery{Server: "127.0.0.1:1", Name: "a.example.", Type: "A", Timeout: 100 * time.Millisecond})
			return err
		},
		"ResolvConf": func(ctx context.Context, _ *agent.Link, c *agent.Client, _ int) error {
			_, err := c.ResolvConf(ctx)
			return err
		},
		"Capture": func(ctx context.Context, _ *agent.Link, c *agent.Client, _ int) error {
			_, err := c.Capture(ctx, agent.CaptureRequest{Interface: "lo", Filter: "tcp port eighty"}, nil)
			return err
		},
		"Intercept": func(ctx context.Context, _ *agent.Link, c *agent.Client, port int) error {
			return c.Intercept(ctx, agent.InterceptSpec{ListenPort: port})
		},
		"Exchanges": func(ctx context.Context, _ *agent.Link, c *agent.Client, _ int) error {
			_, err := c.Exchanges(ctx, agent.ExchangesRequest{}, func([]*recording.Exchange) error { return nil })
			return err
		},
		"dial": func(ctx context.Context, l *agent.Link, _ *agent.Client, port int) error {
			c, err := l.Dial(ctx, fmt.Sprintf("127.0.0.1:%d", port))
			if err == nil {
				c.Close()
			} else if strings.Contains(err.Error(), "does not serve") || strings.Contains(err.Error(), "serves") {
				return fmt.Errorf("%v: %w", err, agent.ErrNotServed)
			}
			return err
		},
	}
	// The jobs that serve each call.
	job := map[string][]agent.Job{"Probe": {agent.JobProbe}, "QueryDNS": {agent.JobProbe, agent.JobRun},
		"ResolvConf": {agent.JobProbe, agent.JobRun}, "Capture": {agent.JobCapture}, "Intercept": {agent.JobIntercept},
		"Exchanges": {agent.JobIntercept}, "dial": {agent.JobIntercept, agent.JobRun}}
	for _, jobs := range [][]agent.Job{{agent.JobCapture}, {agent.JobProbe}, {agent.JobRun}} {
		t.Run(agent.JoinJobs(jobs), func(t *testing.T) {
			h := newHarnessFor(t, named(t, "app"), func(c *Config) { c.Jobs = jobs })
			link, client, err := h.daemon(testToken, 1)
			if err != nil {
				t.Fatal(err)
			}
			for name, call := range calls {
				ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
				err := call(ctx, link, client, h.frontPort)
				cancel()
				served := slices.Contains(job[name], jobs[0])
				if refused := errors.Is(err, agent.ErrNotServed); refused == served {
					t.Errorf("%s on an agent serving %s: err = %v; want refused: %v", name, jobs[0], err, !served)
				}
			}
		})
	}
}
