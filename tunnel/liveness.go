package tunnel

import (
	"encoding/binary"
	"net"
	"sync/atomic"
	"time"
)

// The dead-peer check. yamux's own keepalive pings every interval and
// gives each ping, and each frame's write, ConnectionWriteTimeout to
// complete; its pings queue behind data frames, so on a slow link under
// bulk a live peer was declared dead whenever the frames queued before a
// ping took longer than that to drain, which capped the frame size.
//
// Here the peer is alive as long as bytes arrive from it. This end pings
// only when nothing has arrived for KeepAliveInterval, and owes nothing
// until the ping has actually been written to the connection (not merely
// queued behind data): from then on the peer has DeadPeerTimeout to show
// any sign of life (a byte read, be it the ping's answer, data or a window
// update). A write to the connection that blocks for WriteTimeout also
// ends the session: a live peer always reads (yamux's receive loop never
// waits on the application), so a write blocked that long means the link
// is dead, or slower than tether supports.

// yamux frame header: version(1) type(1) flags(2) stream(4) length(4).
const (
	yamuxTypePing = 2
	yamuxFlagSYN  = 1
)

// liveConn is the connection under yamux (below the coalescing conn),
// recording when bytes last arrived, when this end's last ping went out
// and since when a write has been blocked. Times are nanoseconds since
// base, read from the monotonic clock; 0 means never.
type liveConn struct {
	net.Conn
	base        time.Time
	lastRead    atomic.Int64
	pingStart   atomic.Int64 // when the write of the last ping began
	pingWritten atomic.Int64 // when it ended
	writeSince  atomic.Int64 // start of the write in progress, 0 when none
}

func newLiveConn(c net.Conn) *liveConn {
	l := &liveConn{Conn: c, base: time.Now()}
	l.lastRead.Store(l.now()) // the handshake just read from the peer
	return l
}

// now is never 0, so that 0 can mean "never".
func (l *liveConn) now() int64 { return int64(time.Since(l.base)) + 1 }

func (l *liveConn) Read(p []byte) (int, error) {
	n, err := l.Conn.Read(p)
	if n > 0 {
		l.lastRead.Store(l.now())
	}
	return n, err
}

func (l *liveConn) Write(p []byte) (int, error) {
	start := l.now()
	l.writeSince.Store(start)
	n, err := l.Conn.Write(p)
	l.writeSince.Store(0)
	// yamux writes a ping as its 12-byte header alone. Its answer may be
	// read before this Write returns (a pipe delivers as it writes): any
	// byte read since the write began settles it.
	if err == nil && len(p) == yamuxHeaderLen && p[1] == yamuxTypePing && binary.BigEndian.Uint16(p[2:4])&yamuxFlagSYN != 0 {
		l.pingStart.Store(start)
		l.pingWritten.Store(l.now())
	}
	return n, err
}

// liveness is the verdict of one look at a liveConn.
type liveness int

const (
	alive liveness = iota
	shouldPing
	deadSilent  // a ping went out DeadPeerTimeout ago and nothing came back
	deadBlocked // a write has been blocked for WriteTimeout
)

// check judges the connection at now (liveConn.now's clock).
func (l *liveConn) check(now int64, cfg Config) liveness {
	if since := l.writeSince.Load(); since != 0 && now-since >= int64(cfg.WriteTimeout) {
		return deadBlocked
	}
	ping, read, pingStart := l.pingWritten.Load(), l.lastRead.Load(), l.pingStart.Load()
	if ping != 0 && read < pingStart && now-ping >= int64(cfg.DeadPeerTimeout) {
		return deadSilent
	}
	if now-read >= int64(cfg.KeepAliveInterval) {
		return shouldPing
	}
	return alive
}

// verdict is check's verdict at now, for a monitor whose previous look
// was at prev. A look that comes late (more than two intervals after
// the one before) finds this process starved of CPU, not necessarily the
// peer silent: the bytes that prove the peer alive may sit unread in the
// socket because the goroutine that reads them has not run either. Such
// a look never declares the peer dead; the next, on time, judges.
func (l *liveConn) verdict(now, prev int64, cfg Config) liveness {
	v := l.check(now, cfg)
	if (v == deadSilent || v == deadBlocked) && now-prev > 2*int64(checkInterval(cfg)) {
		return alive
	}
	return v
}

// checkInterval is how often monitor looks: a quarter of the shorter of
// KeepAliveInterval and DeadPeerTimeout, so that a dead peer on an idle
// link is noticed within KeepAliveInterval + DeadPeerTimeout plus two
// such ticks.
func checkInterval(cfg Config) time.Duration {
	return min(cfg.KeepAliveInterval, cfg.DeadPeerTimeout) / 4
}

// monitor runs the dead-peer check until the session ends, and closes the
// session when the peer is found dead.
func (s *Session) monitor(l *liveConn) {
	t := time.NewTicker(checkInterval(s.cfg))
	defer t.Stop()
	var pinging atomic.Bool
	prev := l.now()
	for {
		select {
		case <-s.mux.CloseChan():
			return
		case <-t.C:
		}
		now := l.now()
		v := l.verdict(now, prev, s.cfg)
		if v == alive && now-prev > 2*int64(checkInterval(s.cfg)) && l.check(now, s.cfg) != alive {
			s.cfg.logger().Debug("tunnel: this process was starved of CPU; the peer is judged at the next look",
				"late", time.Duration(now-prev))
		}
		prev = now
		switch v {
		case shouldPing:
			// One ping at a time; its answer, like any byte, moves
			// lastRead. Ping's own result is not the verdict: it waits
			// out yamux's ConnectionWriteTimeout, which is long.
			if pinging.CompareAndSwap(false, true) {
				go func() {
					defer pinging.Store(false)
					_, _ = s.mux.Ping()
				}()
			}
		case deadSilent:
			s.cfg.logger().Warn("tunnel: peer dead: nothing received since a ping went out",
				"silent", time.Duration(now-l.lastRead.Load()), "since_ping", time.Duration(now-l.pingWritten.Load()))
			s.die(ErrPeerDead)
			return
		case deadBlocked:
			s.cfg.logger().Warn("tunnel: peer dead: a write to it is blocked",
				"blocked", time.Duration(now-l.writeSince.Load()))
			s.die(ErrPeerDead)
			return
		}
	}
}

// die records why the session ends and closes it.
func (s *Session) die(err error) {
	s.deadErr.CompareAndSwap(nil, &err)
	s.mux.Close()
}
