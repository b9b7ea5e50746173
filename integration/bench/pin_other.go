//go:build !linux

package main

import "errors"

func pinAgents(map[string]*benchAgent) error {
	return errors.New("-pin-agents works on Linux only")
}
