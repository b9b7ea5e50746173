package agent

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	agentv1 "github.com/tetherkube/tether/proto/agent/v1"
)

// grpcServer adapts an InfoService to the generated Agent server interface.
type grpcServer struct {
	agentv1.UnimplementedAgentServer
	svc InfoService
}

// NewGRPCServer returns the gRPC adapter for svc.
func NewGRPCServer(svc InfoService) agentv1.AgentServer {
	return &grpcServer{svc: svc}
}

func (s *grpcServer) Info(ctx context.Context, _ *agentv1.InfoRequest) (*agentv1.InfoResponse, error) {
	info, err := s.svc.Info(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "agent info: %v", err)
	}
	return &agentv1.InfoResponse{
		Version:         info.Version,
		Commit:          info.Commit,
		PodName:         info.PodName,
		PodNamespace:    info.PodNamespace,
		StartedUnixNano: info.StartedAt.UnixNano(),
	}, nil
}

// Client reaches an agent's control API over a gRPC connection.
type Client struct {
	rpc agentv1.AgentClient
}

var _ InfoService = (*Client)(nil)

// NewClient returns a Client using conn.
func NewClient(conn grpc.ClientConnInterface) *Client {
	return &Client{rpc: agentv1.NewAgentClient(conn)}
}

// Info asks the agent what it is.
func (c *Client) Info(ctx context.Context) (Info, error) {
	resp, err := c.rpc.Info(ctx, &agentv1.InfoRequest{})
	if err != nil {
		return Info{}, fmt.Errorf("agent info: %w", err)
	}
	return Info{
		Version:      resp.GetVersion(),
		Commit:       resp.GetCommit(),
		PodName:      resp.GetPodName(),
		PodNamespace: resp.GetPodNamespace(),
		StartedAt:    time.Unix(0, resp.GetStartedUnixNano()),
	}, nil
}
