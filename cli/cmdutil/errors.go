// Package cmdutil holds what every tether command shares: the factory that
// hands a command its dependencies, the error kinds that decide the exit
// code, and the -o json|yaml printer.
package cmdutil

import (
	"errors"
	"fmt"
)

// Exit codes, decided in one place (ExitCode) for every command.
const (
	ExitOK       = 0
	ExitInternal = 1 // something broke that the user could not have avoided
	ExitUser     = 2 // bad flags, names or input: the message says what to fix
	ExitFailed   = 3 // the command ran and what it checked is broken (a trace's path)
	ExitCanceled = 130
)

// UserError is an error the user can fix: bad input, a missing object, a
// cluster that is not reachable. Its message says what is wrong and what to
// do next.
type UserError struct {
	Err error
}

func (e *UserError) Error() string { return e.Err.Error() }
func (e *UserError) Unwrap() error { return e.Err }

// UserErrorf formats a UserError.
func UserErrorf(format string, args ...any) error {
	return &UserError{Err: fmt.Errorf(format, args...)}
}

// CheckFailedError reports that a command ran and found what it checks
// broken, e.g. a trace whose path breaks; its output says where.
type CheckFailedError struct {
	Err error
}

func (e *CheckFailedError) Error() string { return e.Err.Error() }
func (e *CheckFailedError) Unwrap() error { return e.Err }

// ErrCanceled reports that the user interrupted the command.
var ErrCanceled = errors.New("canceled")

// ExitCode maps an error returned by a command to the process exit code.
func ExitCode(err error) int {
	var ue *UserError
	var cf *CheckFailedError
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, ErrCanceled):
		return ExitCanceled
	case errors.As(err, &ue):
		return ExitUser
	case errors.As(err, &cf):
		return ExitFailed
	default:
		return ExitInternal
	}
}
