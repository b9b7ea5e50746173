package netns

import (
	"bytes"
	"strings"
)

// podHosts returns nsswitch.conf with its hosts line set to "files dns",
// what a pod's images use, and whether that changed anything. A laptop's
// "resolve" (systemd-resolved over its socket) or "mdns4_minimal" would
// answer, or refuse, cluster names without asking DNS, that is without
// tether's resolver.
func podHosts(conf []byte) ([]byte, bool) {
	lines := bytes.Split(conf, []byte("\n"))
	changed, found := false, false
	for i, l := range lines {
		f := strings.Fields(string(l))
		if len(f) == 0 || f[0] != "hosts:" {
			continue
		}
		found = true
		if strings.Join(f[1:], " ") != "files dns" {
			lines[i] = []byte("hosts: files dns")
			changed = true
		}
	}
	if !found {
		return conf, false // glibc's default is "dns [!UNAVAIL=return] files"
	}
	return bytes.Join(lines, []byte("\n")), changed
}
