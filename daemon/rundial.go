package daemon

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/tetherkube/tether/internal/errdefs"
	"github.com/tetherkube/tether/tunnel"
)

// The run dial socket (rundial.md): a unix socket beside the daemon's,
// where a run's process asks for connections from the target pod.

// DialSocketFor is the dial socket of the daemon serving socket.
func DialSocketFor(socket string) string {
	return strings.TrimSuffix(socket, ".sock") + ".dial.sock"
}

// Limits of the dial request line.
const (
	maxDialLine   = 1024
	maxDialReason = 1024
)

// ErrRunUnknown: the daemon has no run with that id (it ended, or the
// daemon restarted).
var ErrRunUnknown = errdefs.New(errdefs.ErrUnavailable, "RUN_UNKNOWN", "the daemon has no such run (it ended, or the daemon restarted)")

// DialRun connects to addr ("host:port"; host may be a cluster name, which
// the pod's resolver resolves) from the pod of run runID, through the
// daemon's dial socket. The returned connection half-closes (CloseWrite).
func DialRun(ctx context.Context, socket, runID, addr string) (net.Conn, error) {
	if socket == "" {
		return nil, errdefs.Unavailable("dial %s: the daemon has no dial socket (its log, `tether logs`, says why)", addr)
	}
	if strings.ContainsAny(runID+addr, " \r\n") || runID == "" {
		return nil, fmt.Errorf("dial %q for run %q: no spaces or line breaks", addr, runID)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return nil, fmt.Errorf("reach the daemon's dial socket: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := io.WriteString(c, runID+" "+addr+"\n"); err != nil {
		c.Close()
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	var status [1]byte
	if _, err := io.ReadFull(c, status[:]); err != nil {
		c.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("dial %s: the daemon closed the connection: %w", addr, err)
	}
	if status[0] != 0 {
		reason, _ := io.ReadAll(io.LimitReader(c, maxDialReason))
		c.Close()
		if status[0] == dialUnknownRun {
			return nil, fmt.Errorf("dial %s: %w", addr, ErrRunUnknown)
		}
		return nil, fmt.Errorf("dial %s from the pod: %s", addr, reason)
	}
	if !stop() {
		c.Close()
		return nil, ctx.Err()
	}
	return c, nil
}

// Status bytes of the dial socket.
const (
	dialOK         = 0
	dialFailed     = 1
	dialUnknownRun = 2
)

// ServeDialConn answers one connection to the dial socket (the daemon's
// side of DialRun): it reads the request, asks dial (which finds the run
// by id and returns ErrRunUnknown when there is none) and joins the two
// connections, or answers why not.
func ServeDialConn(ctx context.Context, c net.Conn, dial func(ctx context.Context, runID, addr string) (net.Conn, error)) error {
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReaderSize(c, maxDialLine)
	line, err := br.ReadSlice('\n')
	if err != nil {
		c.Close()
		return fmt.Errorf("read a dial request: %w", err)
	}
	c.SetReadDeadline(time.Time{})
	runID, addr, ok := strings.Cut(strings.TrimSuffix(string(line), "\n"), " ")
	if !ok {
		c.Write(append([]byte{dialFailed}, "want RUNID HOST:PORT"...))
		c.Close()
		return errors.New("malformed dial request")
	}
	remote, err := dial(ctx, runID, addr)
	if err != nil {
		code := byte(dialFailed)
		if errors.Is(err, ErrRunUnknown) {
			code = dialUnknownRun
		}
		msg := err.Error()
		if len(msg) > maxDialReason {
			msg = msg[:maxDialReason]
		}
		c.Write(append([]byte{code}, msg...))
		c.Close()
		return err
	}
	if _, err := c.Write([]byte{dialOK}); err != nil {
		c.Close()
		remote.Close()
		return err
	}
	if br.Buffered() > 0 {
		// The client wrote before the answer: pass those bytes on first.
		b, _ := br.Peek(br.Buffered())
		if _, err := remote.Write(b); err != nil {
			c.Close()
			remote.Close()
			return err
		}
	}
	tunnel.Join(c, remote)
	return nil
}
