package cmdutil

import (
	"errors"
	"fmt"

	"github.com/tetherkube/tether/internal/errdefs"
)

// ExitStatus is the exit status of the process a command ran for the user
// (tether run -- CMD): tether exits with it and adds no message, since
// the process spoke for itself.
type ExitStatus int

func (e ExitStatus) Error() string { return fmt.Sprintf("the command exited with status %d", int(e)) }

// Exit codes, decided in one place (ExitCode) for every command from the
// error's class (internal/errdefs).
const (
	ExitOK       = 0
	ExitInternal = 1 // something broke that the user could not have avoided, or is unreachable now
	ExitUser     = 2 // bad flags, names or input, a missing object: the message says what to fix
	ExitFailed   = 3 // the command ran and what it checked is broken (a trace's path)
	ExitCanceled = 130
)

// ExitCode maps an error returned by a command to the process exit code.
func ExitCode(err error) int {
	var st ExitStatus
	if errors.As(err, &st) {
		return int(st)
	}
	switch errdefs.Class(err) {
	case nil:
		return ExitOK
	case errdefs.ErrCanceled:
		return ExitCanceled
	case errdefs.ErrUser, errdefs.ErrNotFound, errdefs.ErrAlreadyExists:
		return ExitUser
	case errdefs.ErrFailedCheck:
		return ExitFailed
	default:
		return ExitInternal
	}
}

// Message is what the user reads for err: its message, and for errors the
// user could not have avoided, where to look next; "" when there is
// nothing to say (an ExitStatus).
func Message(err error) string {
	var st ExitStatus
	if err == nil || errors.As(err, &st) {
		return ""
	}
	switch errdefs.Class(err) {
	case errdefs.ErrInternal:
		return err.Error() + " (details: `tether logs`)"
	case errdefs.ErrUnavailable:
		return err.Error() + " (is the cluster reachable? `tether status` checks; details: `tether logs`)"
	}
	return err.Error()
}
