package errdefs

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var errNoRaw = New(ErrUser, "NO_CAP_NET_RAW", "capturing needs CAP_NET_RAW")

func TestClass(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"nil", nil, nil},
		{"plain", errors.New("boom"), ErrInternal},
		{"user", User("bad port %d", 0), ErrUser},
		{"wrapped user", fmt.Errorf("intercept: %w", User("bad")), ErrUser},
		{"not found", NotFound("no pod %q", "x"), ErrNotFound},
		{"exists", AlreadyExists("taken"), ErrAlreadyExists},
		{"check", FailedCheck("path broken"), ErrFailedCheck},
		{"unavailable", Unavailable("no cluster"), ErrUnavailable},
		{"context canceled", fmt.Errorf("wait: %w", context.Canceled), ErrCanceled},
		{"deadline", fmt.Errorf("wait: %w", context.DeadlineExceeded), ErrUnavailable},
		{"sentinel", fmt.Errorf("capture: %w", errNoRaw), ErrUser},
		{"marked", Mark(ErrNotFound, errors.New("gone")), ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Class(tt.err); got != tt.want {
				t.Errorf("Class(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestMessageUnchanged(t *testing.T) {
	err := User("deployment/api has no port named %q; ports: %s", "http", "8080/web")
	if got, want := err.Error(), `deployment/api has no port named "http"; ports: 8080/web`; got != want {
		t.Errorf("message %q, want %q", got, want)
	}
	inner := errors.New("inner")
	if !errors.Is(User("outer: %w", inner), inner) {
		t.Error("%w cause lost")
	}
}

// TestGRPCRoundTrip: every class, the context errors and a sentinel's
// reason survive ToGRPC then FromGRPC, with the message intact.
func TestGRPCRoundTrip(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		code     codes.Code
		class    error
		matchErr error
	}{
		{"user", User("bad filter"), codes.InvalidArgument, ErrUser, nil},
		{"not found", NotFound("no such port"), codes.NotFound, ErrNotFound, nil},
		{"exists", AlreadyExists("port taken"), codes.AlreadyExists, ErrAlreadyExists, nil},
		{"check", FailedCheck("broken"), codes.FailedPrecondition, ErrFailedCheck, nil},
		{"unavailable", Unavailable("agent gone"), codes.Unavailable, ErrUnavailable, nil},
		{"internal", errors.New("boom"), codes.Internal, ErrInternal, nil},
		{"canceled", context.Canceled, codes.Canceled, ErrCanceled, context.Canceled},
		{"deadline", fmt.Errorf("rollout: %w", context.DeadlineExceeded), codes.DeadlineExceeded, ErrUnavailable, context.DeadlineExceeded},
		{"sentinel", fmt.Errorf("pod x: %w", errNoRaw), codes.InvalidArgument, ErrUser, errNoRaw},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wire := ToGRPC(tt.err)
			if got := status.Code(wire); got != tt.code {
				t.Fatalf("code %v, want %v", got, tt.code)
			}
			back := FromGRPC(wire, errNoRaw)
			if got := Class(back); got != tt.class {
				t.Errorf("class after the wire %v, want %v", got, tt.class)
			}
			if back.Error() != tt.err.Error() {
				t.Errorf("message after the wire %q, want %q", back.Error(), tt.err.Error())
			}
			if tt.matchErr != nil && !errors.Is(back, tt.matchErr) {
				t.Errorf("after the wire, errors.Is(%v) is false", tt.matchErr)
			}
		})
	}
}

// TestFromGRPCUnknownReason: a FailedPrecondition with another reason is
// not mistaken for a known sentinel (the agent client once turned every
// FailedPrecondition into "no CAP_NET_RAW").
func TestFromGRPCUnknownReason(t *testing.T) {
	other := New(ErrUser, "NOT_RECORDING", "this agent does not record")
	back := FromGRPC(ToGRPC(other), errNoRaw)
	if errors.Is(back, errNoRaw) {
		t.Error("a different reason matched errNoRaw")
	}
	if !errors.Is(FromGRPC(ToGRPC(other), errNoRaw, other), other) {
		t.Error("the known reason was not matched")
	}
	plain := FromGRPC(status.Error(codes.FailedPrecondition, "x"), errNoRaw)
	if errors.Is(plain, errNoRaw) {
		t.Error("a status without a reason matched errNoRaw")
	}
}

func TestNotAStatus(t *testing.T) {
	err := errors.New("dial: refused")
	if got := FromGRPC(err); got != err {
		t.Errorf("FromGRPC changed a non-status error: %v", got)
	}
	if FromGRPC(nil) != nil || ToGRPC(nil) != nil {
		t.Error("nil did not stay nil")
	}
}
