package errdefs

import (
	"context"
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// domain names tether's reasons in a status's ErrorInfo detail.
const domain = "tether.dev"

// ToGRPC returns err as a gRPC status error whose code is err's class (and
// whose details carry the reason of the sentinel err wraps, if any).
// Context errors map to Canceled and DeadlineExceeded; an error that
// already is a status keeps its code. nil stays nil.
func ToGRPC(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok && !hasClass(err) {
		return err
	}
	code := codes.Internal
	switch Class(err) {
	case ErrUser:
		code = codes.InvalidArgument
	case ErrNotFound:
		code = codes.NotFound
	case ErrAlreadyExists:
		code = codes.AlreadyExists
	case ErrFailedCheck:
		code = codes.FailedPrecondition
	case ErrCanceled:
		code = codes.Canceled
	case ErrUnavailable:
		code = codes.Unavailable
		if errors.Is(err, context.DeadlineExceeded) {
			code = codes.DeadlineExceeded
		}
	}
	st := status.New(code, err.Error())
	var e *Error
	if errors.As(err, &e) && e.reason != "" {
		if withInfo, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: e.reason, Domain: domain}); derr == nil {
			st = withInfo
		}
	}
	return st.Err()
}

// hasClass reports whether err carries a class attached by this package.
func hasClass(err error) bool {
	var e *Error
	return errors.As(err, &e)
}

// FromGRPC turns a gRPC status error back into an error of the matching
// class, with the status's message. known are the sentinels (made by New)
// the caller wants to recognise: the returned error matches the one whose
// reason the status carries. An error that is not a status is returned as
// it is; nil stays nil.
func FromGRPC(err error, known ...error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	cause := errors.New(st.Message())
	var class error
	switch st.Code() {
	case codes.OK:
		return nil
	case codes.InvalidArgument, codes.OutOfRange, codes.PermissionDenied, codes.Unauthenticated:
		class = ErrUser
	case codes.NotFound:
		class = ErrNotFound
	case codes.AlreadyExists:
		class = ErrAlreadyExists
	case codes.FailedPrecondition:
		class = ErrFailedCheck
	case codes.Canceled:
		class, cause = ErrCanceled, wrapMessage(st.Message(), context.Canceled)
	case codes.DeadlineExceeded:
		class, cause = ErrUnavailable, wrapMessage(st.Message(), context.DeadlineExceeded)
	case codes.Unavailable, codes.ResourceExhausted, codes.Aborted:
		class = ErrUnavailable
	default:
		class = ErrInternal
	}
	out := &Error{class: class, cause: cause}
	for _, d := range st.Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok || info.GetDomain() != domain {
			continue
		}
		out.reason = info.GetReason()
		for _, k := range known {
			var ke *Error
			if errors.As(k, &ke) && ke.reason == out.reason {
				out.also = k
			}
		}
	}
	return out
}

// wrapMessage is an error with message msg that matches target.
func wrapMessage(msg string, target error) error {
	return &messageError{msg: msg, target: target}
}

type messageError struct {
	msg    string
	target error
}

func (m *messageError) Error() string { return m.msg }
func (m *messageError) Unwrap() error { return m.target }
