package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	agentv1 "github.com/tetherkube/tether/proto/agent/v1"
)

// grpcServer adapts a Service to the generated Agent server interface.
type grpcServer struct {
	agentv1.UnimplementedAgentServer
	svc Service
}

// NewGRPCServer returns the gRPC adapter for svc.
func NewGRPCServer(svc Service) agentv1.AgentServer {
	return &grpcServer{svc: svc}
}

// toStatus maps the Service's errors to gRPC codes.
func toStatus(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrUnknownPort):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, ErrAlreadyIntercepted):
		return status.Error(codes.AlreadyExists, err.Error())
	default:
		return status.Error(codes.Internal, err.Error())
	}
}

// fromStatus maps gRPC codes back to the Service's errors.
func fromStatus(op string, err error) error {
	switch status.Code(err) {
	case codes.OK:
		return nil
	case codes.NotFound:
		return fmt.Errorf("%s: %s: %w", op, status.Convert(err).Message(), ErrUnknownPort)
	case codes.AlreadyExists:
		return fmt.Errorf("%s: %s: %w", op, status.Convert(err).Message(), ErrAlreadyIntercepted)
	default:
		return fmt.Errorf("%s: %w", op, err)
	}
}

func (s *grpcServer) Info(ctx context.Context, _ *agentv1.InfoRequest) (*agentv1.InfoResponse, error) {
	info, err := s.svc.Info(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &agentv1.InfoResponse{
		Version:         info.Version,
		Commit:          info.Commit,
		PodName:         info.PodName,
		PodNamespace:    info.PodNamespace,
		StartedUnixNano: info.StartedAt.UnixNano(),
	}
	for _, f := range info.Forwards {
		resp.Forwards = append(resp.Forwards, &agentv1.Forward{
			ListenPort: uint32(f.ListenPort), AppPort: uint32(f.AppPort), Intercepted: f.Intercepted,
		})
	}
	return resp, nil
}

func (s *grpcServer) Intercept(ctx context.Context, req *agentv1.InterceptRequest) (*agentv1.InterceptResponse, error) {
	return &agentv1.InterceptResponse{}, toStatus(s.svc.Intercept(ctx, int(req.GetListenPort())))
}

func (s *grpcServer) Leave(ctx context.Context, req *agentv1.LeaveRequest) (*agentv1.LeaveResponse, error) {
	return &agentv1.LeaveResponse{}, toStatus(s.svc.Leave(ctx, int(req.GetListenPort())))
}

// Client reaches an agent's control API over a gRPC connection (in
// production, one carried by a tunnel's control streams).
type Client struct {
	rpc agentv1.AgentClient
}

var _ Service = (*Client)(nil)

// NewClient returns a Client using conn.
func NewClient(conn grpc.ClientConnInterface) *Client {
	return &Client{rpc: agentv1.NewAgentClient(conn)}
}

// Info asks the agent what it is.
func (c *Client) Info(ctx context.Context) (Info, error) {
	resp, err := c.rpc.Info(ctx, &agentv1.InfoRequest{})
	if err != nil {
		return Info{}, fromStatus("agent info", err)
	}
	info := Info{
		Version:      resp.GetVersion(),
		Commit:       resp.GetCommit(),
		PodName:      resp.GetPodName(),
		PodNamespace: resp.GetPodNamespace(),
		StartedAt:    time.Unix(0, resp.GetStartedUnixNano()),
	}
	for _, f := range resp.GetForwards() {
		info.Forwards = append(info.Forwards, ForwardStatus{
			Forward:     Forward{ListenPort: int(f.GetListenPort()), AppPort: int(f.GetAppPort())},
			Intercepted: f.GetIntercepted(),
		})
	}
	return info, nil
}

// Intercept asks the agent to send the port's connections into this tunnel.
func (c *Client) Intercept(ctx context.Context, listenPort int) error {
	_, err := c.rpc.Intercept(ctx, &agentv1.InterceptRequest{ListenPort: uint32(listenPort)})
	return fromStatus(fmt.Sprintf("intercept port %d", listenPort), err)
}

// Leave asks the agent to send the port's connections to the app again.
func (c *Client) Leave(ctx context.Context, listenPort int) error {
	_, err := c.rpc.Leave(ctx, &agentv1.LeaveRequest{ListenPort: uint32(listenPort)})
	return fromStatus(fmt.Sprintf("leave port %d", listenPort), err)
}
