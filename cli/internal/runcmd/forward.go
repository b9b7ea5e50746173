package runcmd

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"strings"

	"github.com/tetherkube/tether/internal/errdefs"
	"github.com/tetherkube/tether/tunnel"
)

// Forward is one --forward svc/NAME:PORT[:LOCALPORT].
type Forward struct {
	Service string
	// Port is the Service port as written: a number, or its name.
	Port      string
	LocalPort int
}

func (f Forward) String() string { return fmt.Sprintf("svc/%s:%s:%d", f.Service, f.Port, f.LocalPort) }

// ParseForward reads svc/NAME:PORT[:LOCALPORT]; PORT is the Service port's
// number or name; LOCALPORT defaults to PORT's number.
func ParseForward(v string) (Forward, error) {
	bad := func(why string) (Forward, error) {
		return Forward{}, errdefs.User("--forward %q: %s; write svc/NAME:PORT[:LOCALPORT], e.g. --forward svc/postgres:5432 or svc/postgres:5432:15432", v, why)
	}
	rest, ok := strings.CutPrefix(v, "svc/")
	if !ok {
		if rest, ok = strings.CutPrefix(v, "service/"); !ok {
			return bad("only Services can be forwarded (svc/NAME)")
		}
	}
	parts := strings.Split(rest, ":")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" {
		return bad("want a Service name and a port")
	}
	f := Forward{Service: parts[0]}
	if strings.ContainsAny(f.Service, "./ ") {
		return bad("the Service name is a name in the namespace (-n), without dots")
	}
	f.Port = parts[1]
	n, err := port(parts[1])
	switch {
	case err == nil:
		f.LocalPort = n
	case !portName.MatchString(parts[1]) || !strings.ContainsAny(parts[1], "abcdefghijklmnopqrstuvwxyz"):
		return bad("PORT " + err.Error() + " nor a port name")
	case len(parts) < 3:
		return bad("PORT " + parts[1] + " is a name: give LOCALPORT too")
	}
	if len(parts) == 3 {
		if f.LocalPort, err = port(parts[2]); err != nil {
			return bad("LOCALPORT " + err.Error())
		}
	}
	return f, nil
}

// portName is a Service port's name (an IANA_SVC_NAME: lower case letters,
// digits and dashes, with a letter).
var portName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$`)

func port(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%q is not a port number (1-65535)", s)
	}
	return n, nil
}

// Listen opens every forward's listener on 127.0.0.1 first, so that a
// port in use fails the run before the process starts; Serve then
// carries each connection through dial.
func Listen(forwards []Forward) ([]net.Listener, error) {
	var ls []net.Listener
	for _, f := range forwards {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(f.LocalPort)))
		if err != nil {
			for _, l := range ls {
				l.Close()
			}
			return nil, errdefs.User("--forward %s: cannot listen on 127.0.0.1:%d (%v): choose another LOCALPORT", f, f.LocalPort, err)
		}
		ls = append(ls, l)
	}
	return ls, nil
}

// Serve accepts on l until it is closed, carrying each connection to
// addr through dial.
func Serve(ctx context.Context, l net.Listener, addr string, dial func(context.Context, string) (net.Conn, error), log *slog.Logger) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			remote, err := dial(ctx, addr)
			if err != nil {
				log.Warn("forward", "to", addr, "err", err)
				c.Close()
				return
			}
			tunnel.Join(c, remote)
		}()
	}
}
