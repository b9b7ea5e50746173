package runcmd

import (
	"os"
	"testing"
)

// TestDevNullIsNoTerminal: CMD started with stdin from /dev/null (a script,
// a test) gets SIGINT from tether, since no terminal sends it one.
func TestDevNullIsNoTerminal(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if IsTerminal(f) {
		t.Error("/dev/null is taken for a terminal")
	}
}
