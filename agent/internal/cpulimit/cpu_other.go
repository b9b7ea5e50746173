//go:build !unix

package cpulimit

import "time"

// processCPU is not read here: the agent runs in Linux pods.
func processCPU() time.Duration { return 0 }
