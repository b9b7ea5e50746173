package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
)

// profileEnv names a folder: when set, the daemon (`tether daemon run`)
// and `tether run`/`intercept` write CPU, block and mutex profiles of
// their whole life there (`make bench PROFILE=1`), and the daemon also
// profiles every agent it links to (agent-POD.*, cli/daemoncmd). Nothing
// is served on a port; the files are the process's user's.
const profileEnv = "TETHER_PROFILE_DIR"

// startProfiles starts the profiles when profileEnv is set and args are
// a command worth profiling; the returned function writes them.
func startProfiles(args []string) func() {
	dir := os.Getenv(profileEnv)
	if dir == "" || len(args) == 0 {
		return func() {}
	}
	var role string
	switch {
	case args[0] == "daemon" && len(args) > 1 && args[1] == "run":
		role = "daemon"
	case args[0] == "run" || args[0] == "intercept":
		role = args[0]
	default:
		return func() {}
	}
	prefix := filepath.Join(dir, fmt.Sprintf("%s-%d", role, os.Getpid()))
	cpu, err := os.OpenFile(prefix+".cpu.pprof", os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tether: profile:", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(cpu); err != nil {
		fmt.Fprintln(os.Stderr, "tether: profile:", err)
		cpu.Close()
		return func() {}
	}
	runtime.SetBlockProfileRate(10_000) // one sample per 10 µs blocked
	runtime.SetMutexProfileFraction(10)
	return func() {
		pprof.StopCPUProfile()
		cpu.Close()
		for _, p := range []string{"block", "mutex", "heap"} {
			f, err := os.OpenFile(prefix+"."+p+".pprof", os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
			if err != nil {
				continue
			}
			_ = pprof.Lookup(p).WriteTo(f, 0)
			f.Close()
		}
		_ = os.WriteFile(prefix+".args", []byte(strings.Join(args, " ")+"\n"), 0o600)
	}
}
