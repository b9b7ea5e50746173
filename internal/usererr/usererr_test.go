package usererr

import (
	"errors"
	"fmt"
	"io"
	"testing"
)

func TestMarkKeepsMessageAndCause(t *testing.T) {
	err := fmt.Errorf("wrapped: %w", Mark(fmt.Errorf("service orders has no port web: %w", io.EOF)))
	if err.Error() != "wrapped: service orders has no port web: EOF" {
		t.Errorf("message = %q", err)
	}
	if !errors.Is(err, ErrUser) || !errors.Is(err, io.EOF) {
		t.Errorf("errors.Is: user %v, cause %v", errors.Is(err, ErrUser), errors.Is(err, io.EOF))
	}
	if errors.Is(io.EOF, ErrUser) || Mark(nil) != nil {
		t.Error("unmarked errors must not match")
	}
}
