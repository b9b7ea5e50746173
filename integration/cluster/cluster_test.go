package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestRotateLog: a start keeps the earlier runs' logs, the last as .1,
// and drops the oldest beyond the count kept.
func TestRotateLog(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "k3s.log")
	for run := 1; run <= 5; run++ {
		if err := rotateLog(log, 3); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(log, []byte(fmt.Sprintf("run %d\n", run)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, want := range map[string]string{"k3s.log": "run 5\n", "k3s.log.1": "run 4\n", "k3s.log.2": "run 3\n", "k3s.log.3": "run 2\n"} {
		if got, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(got) != want {
			t.Errorf("%s: %q %v, want %q", name, got, err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "k3s.log.4")); err == nil {
		t.Error("k3s.log.4 kept: more than 3 earlier logs")
	}
}
