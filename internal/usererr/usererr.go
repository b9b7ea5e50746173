// Package usererr marks errors the user can fix (bad input, a missing
// object) without changing their message, so that every layer can tell them
// from internal failures with errors.Is(err, usererr.ErrUser) and the CLI
// can map them to its user-error exit code.
package usererr

import (
	"errors"
	"fmt"
)

// ErrUser is what marked errors match with errors.Is.
var ErrUser = errors.New("user error")

type marked struct{ err error }

func (m marked) Error() string        { return m.err.Error() }
func (m marked) Unwrap() error        { return m.err }
func (m marked) Is(target error) bool { return target == ErrUser }

// Errorf formats a user error.
func Errorf(format string, args ...any) error { return marked{fmt.Errorf(format, args...)} }

// Mark marks err as a user error; nil stays nil.
func Mark(err error) error {
	if err == nil {
		return nil
	}
	return marked{err}
}

type kinded struct{ kind, err error }

func (k kinded) Error() string   { return k.err.Error() }
func (k kinded) Unwrap() []error { return []error{k.err, k.kind, ErrUser} }

// Kind formats a user error that also matches kind (a sentinel such as
// "not found"), without kind's text in the message.
func Kind(kind error, format string, args ...any) error {
	return kinded{kind: kind, err: fmt.Errorf(format, args...)}
}
