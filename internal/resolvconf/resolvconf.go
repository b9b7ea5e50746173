// Package resolvconf reads a pod's /etc/resolv.conf and lists, in order,
// the names its resolver tries for a query: what `tether trace` shows as
// the DNS step and sends from the pod, one query per name.
package resolvconf

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Config is what a resolver takes from resolv.conf.
type Config struct {
	Nameservers []string `json:"nameservers"`
	Search      []string `json:"search"`
	Ndots       int      `json:"ndots"`
	// Options lists every option as written, ndots included.
	Options []string `json:"options,omitempty"`
}

// Parse reads resolv.conf. Unknown lines are ignored, as resolvers do; a
// malformed ndots is an error, since it changes every lookup.
func Parse(r io.Reader) (Config, error) {
	c := Config{Ndots: 1}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "nameserver":
			if len(f) > 1 {
				c.Nameservers = append(c.Nameservers, f[1])
			}
		case "search", "domain":
			// The last search or domain line wins.
			c.Search = append([]string(nil), f[1:]...)
		case "options":
			for _, o := range f[1:] {
				c.Options = append(c.Options, o)
				if v, ok := strings.CutPrefix(o, "ndots:"); ok {
					n, err := strconv.Atoi(v)
					if err != nil || n < 0 {
						return c, fmt.Errorf("resolv.conf: bad option %q", o)
					}
					c.Ndots = min(n, 15) // resolvers cap ndots at 15
				}
			}
		}
	}
	return c, sc.Err()
}

// Candidates returns the fully qualified names the resolver tries for name,
// in order: a name ending in a dot is tried as is only; a name with at
// least ndots dots is tried as is first, then with each search domain; a
// shorter one with each search domain first, then as is.
func (c Config) Candidates(name string) []string {
	if strings.HasSuffix(name, ".") {
		return []string{name}
	}
	var searched []string
	for _, d := range c.Search {
		searched = append(searched, name+"."+strings.TrimSuffix(d, ".")+".")
	}
	abs := name + "."
	if strings.Count(name, ".") >= c.Ndots {
		return append([]string{abs}, searched...)
	}
	return append(searched, abs)
}
