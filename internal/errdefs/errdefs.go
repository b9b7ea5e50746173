// Package errdefs is tether's one error scheme. Every error that crosses a
// boundary (agent -> daemon -> CLI -> exit code) belongs to one of a fixed
// set of classes, tested with errors.Is against the class sentinels below.
// Classes are attached where an error arises, without changing its message;
// grpc.go maps them to gRPC status codes and back, so a class survives the
// wire; the CLI picks the exit code from the class in one place
// (cli/cmdutil.ExitCode).
//
// A domain sentinel that callers on the other side of the wire must
// recognise (the agent's "no CAP_NET_RAW", say) is made with New: it carries
// a class and a reason, the reason travels in the status details, and
// FromGRPC hands back an error that matches the sentinel again.
package errdefs

import (
	"context"
	"errors"
	"fmt"
)

// The classes. A plain error without a class is internal.
var (
	// ErrUser: the request cannot work as asked (bad flags, names, ports,
	// input, or a cluster setting the user must change). Its message says
	// what is wrong and what to do.
	ErrUser = errors.New("user error")
	// ErrNotFound: the named object does not exist.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists: the object or claim exists already.
	ErrAlreadyExists = errors.New("already exists")
	// ErrFailedCheck: the command ran and what it checked is broken (a
	// trace's path, a doctor check); its output says where.
	ErrFailedCheck = errors.New("check failed")
	// ErrUnavailable: something needed is not reachable now (the cluster,
	// the daemon, an agent) or did not answer in time; trying again may work.
	ErrUnavailable = errors.New("unavailable")
	// ErrCanceled: the user (or the caller) canceled the operation.
	ErrCanceled = errors.New("canceled")
	// ErrInternal: something broke that the user could not have avoided.
	ErrInternal = errors.New("internal error")
)

// classes in the order Class looks for them: the most specific first.
var classes = []error{ErrCanceled, ErrUser, ErrNotFound, ErrAlreadyExists, ErrFailedCheck, ErrUnavailable, ErrInternal}

// Error is an error with a class and, for sentinels made by New, a reason
// that identifies it across the wire. Its message is its cause's.
type Error struct {
	class  error
	reason string
	cause  error
	// also is a sentinel this error matches besides its cause and class
	// (set by FromGRPC when the reason names a known sentinel).
	also error
}

func (e *Error) Error() string { return e.cause.Error() }

// Unwrap lets errors.Is and errors.As see the cause, the class and the
// sentinel a decoded error stands for.
func (e *Error) Unwrap() []error {
	out := []error{e.cause, e.class}
	if e.also != nil {
		out = append(out, e.also)
	}
	return out
}

// New returns a sentinel of class with a reason (an UPPER_SNAKE identifier,
// unique among the sentinels one service returns) and a message.
func New(class error, reason, message string) error {
	return &Error{class: class, reason: reason, cause: errors.New(message)}
}

// Mark attaches class to err without changing its message; nil stays nil.
func Mark(class, err error) error {
	if err == nil {
		return nil
	}
	return &Error{class: class, cause: err}
}

func newf(class error, format string, args ...any) error {
	return &Error{class: class, cause: fmt.Errorf(format, args...)}
}

// User formats an error of class ErrUser; %w wraps as in fmt.Errorf.
func User(format string, args ...any) error { return newf(ErrUser, format, args...) }

// NotFound formats an error of class ErrNotFound.
func NotFound(format string, args ...any) error { return newf(ErrNotFound, format, args...) }

// AlreadyExists formats an error of class ErrAlreadyExists.
func AlreadyExists(format string, args ...any) error {
	return newf(ErrAlreadyExists, format, args...)
}

// FailedCheck formats an error of class ErrFailedCheck.
func FailedCheck(format string, args ...any) error { return newf(ErrFailedCheck, format, args...) }

// Unavailable formats an error of class ErrUnavailable.
func Unavailable(format string, args ...any) error { return newf(ErrUnavailable, format, args...) }

// Class returns the class of err: one of the sentinels above, ErrInternal
// for an error without one, nil for nil. context.Canceled is ErrCanceled
// and context.DeadlineExceeded ErrUnavailable, unless a class says otherwise.
func Class(err error) error {
	if err == nil {
		return nil
	}
	for _, c := range classes {
		if errors.Is(err, c) {
			return c
		}
	}
	switch {
	case errors.Is(err, context.Canceled):
		return ErrCanceled
	case errors.Is(err, context.DeadlineExceeded):
		return ErrUnavailable
	}
	return ErrInternal
}

// Withf formats an error that matches sentinel (and so its class and
// reason) without the sentinel's text in its message.
func Withf(sentinel error, format string, args ...any) error {
	e := &Error{class: Class(sentinel), cause: fmt.Errorf(format, args...), also: sentinel}
	var s *Error
	if errors.As(sentinel, &s) {
		e.reason = s.reason
	}
	return e
}
