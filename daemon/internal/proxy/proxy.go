// Package proxy serves a run's local proxies: SOCKS5 (RFC 1928, with the
// username/password method of RFC 1929) and HTTP (CONNECT, and plain
// requests in absolute form). Every connection a client asks for is opened
// by a Dial function, which for `tether run` carries it out of the target
// pod; names are passed to Dial unresolved, so the pod's resolver answers.
//
// Both require the run's credentials: the listeners are on loopback, where
// any local user could otherwise borrow the pod's network.
package proxy

import (
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net"
	"strings"
)

// DialFunc opens a TCP connection to addr ("host:port"; host may be a name).
type DialFunc func(ctx context.Context, addr string) (net.Conn, error)

// Config is what both proxies need.
type Config struct {
	// Dial opens the connections clients ask for.
	Dial DialFunc
	// Username and Password are the credentials clients must present.
	Username, Password string
	// Logger gets refused clients and failed dials; nil discards.
	Logger *slog.Logger
}

// Validate checks the Config.
func (c Config) Validate() error {
	if c.Dial == nil {
		return errors.New("proxy: Config.Dial is nil")
	}
	if c.Username == "" || c.Password == "" {
		return errors.New("proxy: credentials are required")
	}
	if len(c.Username) > 255 || len(c.Password) > 255 {
		return errors.New("proxy: SOCKS5 credentials are at most 255 bytes each")
	}
	return nil
}

func (c Config) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

// authorized compares in constant time.
func (c Config) authorized(user, pass string) bool {
	u := subtle.ConstantTimeCompare([]byte(user), []byte(c.Username))
	p := subtle.ConstantTimeCompare([]byte(pass), []byte(c.Password))
	return u&p == 1
}

// javaStyle accepts the password as the username with no password: the
// JDK's SOCKS5 client, without an Authenticator set by the program, sends
// the user.name property and an empty password (it ignores
// java.net.socks.username and .password), so `tether run` sets user.name
// to the password for Java.
func (c Config) javaStyle(user, pass string) bool {
	return pass == "" && subtle.ConstantTimeCompare([]byte(user), []byte(c.Password)) == 1
}

// serveListener accepts on l until it is closed, handling each connection
// in its own goroutine.
func serveListener(ctx context.Context, l net.Listener, handle func(context.Context, net.Conn)) error {
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		go handle(ctx, c)
	}
}

// dialFailure names why a dial failed, in the terms SOCKS5 replies use.
type dialFailure byte

const (
	failGeneral     dialFailure = 1
	failNetUnreach  dialFailure = 3
	failHostUnreach dialFailure = 4
	failRefused     dialFailure = 5
	failTTL         dialFailure = 6
)

// classify reads the reason the pod gave: the agent's dial errors are
// text by the time they cross the tunnel.
func classify(err error) dialFailure {
	s := err.Error()
	switch {
	case strings.Contains(s, "connection refused"):
		return failRefused
	case strings.Contains(s, "no such host"), strings.Contains(s, "host is unreachable"), strings.Contains(s, "no route to host"):
		return failHostUnreach
	case strings.Contains(s, "network is unreachable"):
		return failNetUnreach
	case strings.Contains(s, "timeout"), strings.Contains(s, "deadline exceeded"):
		return failTTL
	}
	return failGeneral
}
