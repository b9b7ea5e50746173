package podenv

import (
	"fmt"
	"strings"
)

// Merge returns the environment the process sees, environ (its
// /proc/PID/environ, NAME=VALUE entries, in its order), with each
// variable's source from spec. A variable the spec does not give comes
// from the image or the runtime. Where the process's value differs from
// the spec's (an object changed since the container started) the
// process's value is kept and a warning names the variable; a variable
// the spec gives that the process lacks is left out, with a warning.
func Merge(spec Result, environ []string) Result {
	bySpec := map[string]Var{}
	for _, v := range spec.Vars {
		bySpec[v.Name] = v
	}
	out := Result{}
	seen := map[string]bool{}
	confirmed := map[string]bool{} // the process has the spec's value
	for _, e := range environ {
		name, value, ok := strings.Cut(e, "=")
		if !ok || seen[name] {
			// execve keeps duplicates and entries without "="; getenv
			// finds the first NAME=, so the first is what the process sees.
			continue
		}
		seen[name] = true
		s, inSpec := bySpec[name]
		switch {
		case !inSpec:
			src, ok := spec.LeftOut[name]
			if !ok {
				src = outsideSource(name)
			}
			out.Vars = append(out.Vars, Var{Name: name, Value: value, Source: src})
		case s.Value == value:
			out.Vars = append(out.Vars, s)
			confirmed[name] = true
		default:
			s.Value = value
			out.Vars = append(out.Vars, s)
			out.Warnings = append(out.Warnings, fmt.Sprintf("%s: the process's value differs from what the spec gives now (%s), "+
				"which changed after the container started; this is the process's value", name, s.Source))
		}
	}
	// A warning about a variable (NAME: ...) the process has says
	// nothing any more: the process's value is the answer (a limit taken
	// from the node, a key removed since the start).
	var kept []string
	for _, w := range spec.Warnings {
		if name, _, ok := strings.Cut(w, ": "); !ok || !seen[name] || (inSpec(spec, name) && !confirmed[name]) {
			kept = append(kept, w)
		}
	}
	out.Warnings = append(kept, out.Warnings...)
	for _, v := range spec.Vars {
		if !seen[v.Name] {
			out.Warnings = append(out.Warnings, fmt.Sprintf("%s: the spec gives it now (%s) but the process does not have it "+
				"(added after the container started): left out", v.Name, v.Source))
		}
	}
	return out
}

func inSpec(spec Result, name string) bool {
	for _, v := range spec.Vars {
		if v.Name == name {
			return true
		}
	}
	return false
}

// outsideSource names where a variable that is not in the spec comes from.
func outsideSource(name string) string {
	if strings.HasPrefix(name, "KUBERNETES_SERVICE_") || strings.HasPrefix(name, "KUBERNETES_PORT") {
		return "service link service/kubernetes"
	}
	switch name {
	case "HOSTNAME":
		return "runtime"
	case "PATH":
		return "image (or the runtime's default)"
	case "HOME":
		return "image (or the runtime, from the user's passwd entry or /)"
	}
	return "image"
}
