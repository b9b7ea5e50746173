package runcmd

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"

	"github.com/tetherkube/tether/internal/errdefs"
	"github.com/tetherkube/tether/tunnel"
)

// Forward is one --forward svc/NAME:PORT[:LOCALPORT].
type Forward struct {
	Service   string
	Port      int
	LocalPort int
}

func (f Forward) String() string { return fmt.Sprintf("svc/%s:%d:%d", f.Service, f.Port, f.LocalPort) }

// ParseForward reads svc/NAME:PORT[:LOCALPORT]; LOCALPORT defaults to PORT.
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
	var err error
	if f.Port, err = port(parts[1]); err != nil {
		return bad("PORT " + err.Error())
	}
	f.LocalPort = f.Port
	if len(parts) == 3 {
		if f.LocalPort, err = port(parts[2]); err != nil {
			return bad("LOCALPORT " + err.Error())
		}
	}
	return f, nil
}

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
