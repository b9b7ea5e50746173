// Package localuser names the person at this machine, as tether shows it
// to others: the owner of an intercept, the value of a bare --http-header.
package localuser

import (
	"os"
	"os/user"
	"strings"
)

// Name is the local user's name without a Windows domain (DOMAIN\user),
// else $USER, else "someone".
func Name() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		name := u.Username
		if i := strings.LastIndexByte(name, '\\'); i >= 0 {
			name = name[i+1:]
		}
		return name
	}
	if v := os.Getenv("USER"); v != "" {
		return v
	}
	return "someone"
}

// Owner is Name at this machine's host name: "ana@laptop".
func Owner() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		return Name()
	}
	return Name() + "@" + host
}
