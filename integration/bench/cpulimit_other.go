//go:build !linux

package main

import "errors"

type cpuLimit struct{}

func limitCPU(int, float64) (*cpuLimit, error) {
	return nil, errors.New("-agent-cpu works on Linux only; pass -agent-cpu 0")
}

func (*cpuLimit) throttled() throttling { return throttling{} }
func (*cpuLimit) remove()               {}
