package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// TestLivenessCheck: the verdict for each state of a connection.
func TestLivenessCheck(t *testing.T) {
	cfg := DefaultConfig(testToken) // ping after 500 ms silent, dead 1 s after a ping out, writes 10 s
	ms := func(n int) int64 { return int64(time.Duration(n) * time.Millisecond) }
	for _, tc := range []struct {
		name                           string
		lastRead, pingWritten, writing int64 // 0: never / none
		now                            int64
		want                           liveness
	}{
		{"read just now", ms(1000), 0, 0, ms(1100), alive},
		{"silent for KeepAliveInterval: ping", ms(1000), 0, 0, ms(1500), shouldPing},
		{"ping out, answer pending", ms(1000), ms(1600), 0, ms(2500), shouldPing},
		{"ping out DeadPeerTimeout ago, nothing since", ms(1000), ms(1600), 0, ms(2600), deadSilent},
		{"ping out long ago but data read since", ms(2550), ms(1600), 0, ms(2600), alive},
		{"the answer read while the ping's write returned", ms(1600), ms(1600), 0, ms(2600), shouldPing},
		{"an old ping, answered, then silence: ping again, not dead", ms(1700), ms(1600), 0, ms(9000), shouldPing},
		{"a write blocked 9.9 s while nothing is read: not dead yet", ms(1000), 0, ms(1000), ms(10900), shouldPing},
		{"a write blocked WriteTimeout", ms(20000), 0, ms(1000), ms(11000), deadBlocked},
		{"a write in progress briefly, reads flowing", ms(5000), 0, ms(4900), ms(5100), alive},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := &liveConn{}
			l.lastRead.Store(tc.lastRead)
			l.pingStart.Store(tc.pingWritten)
			l.pingWritten.Store(tc.pingWritten)
			l.writeSince.Store(tc.writing)
			if got := l.check(tc.now, cfg); got != tc.want {
				t.Errorf("check = %d, want %d", got, tc.want)
			}
		})
	}
}

// TestLivenessLateLook: a look that comes late (this process starved of
// CPU) never declares the peer dead; a look on time does.
func TestLivenessLateLook(t *testing.T) {
	cfg := DefaultConfig(testToken)
	tick := int64(checkInterval(cfg))
	ms := func(n int) int64 { return int64(time.Duration(n) * time.Millisecond) }
	silent := func() *liveConn { // a ping out at 1.6 s, nothing read since 1 s
		l := &liveConn{}
		l.lastRead.Store(ms(1000))
		l.pingStart.Store(ms(1600))
		l.pingWritten.Store(ms(1600))
		return l
	}
	blocked := func() *liveConn { // a write blocked since 1 s, reads flowing
		l := &liveConn{}
		l.lastRead.Store(ms(20000))
		l.writeSince.Store(ms(1000))
		return l
	}
	for _, tc := range []struct {
		name      string
		l         *liveConn
		now, prev int64
		want      liveness
	}{
		{"silent, look on time", silent(), ms(2600), ms(2600) - tick, deadSilent},
		{"silent, look after a stall", silent(), ms(2600), ms(1700), alive},
		{"silent, the look after that", silent(), ms(2600) + tick, ms(2600), deadSilent},
		{"blocked, look on time", blocked(), ms(11000), ms(11000) - tick, deadBlocked},
		{"blocked, look after a stall", blocked(), ms(11000), ms(5000), alive},
		{"a late look that finds nothing wrong pings as usual", &liveConn{}, ms(2000), ms(1000), shouldPing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.l.verdict(tc.now, tc.prev, cfg); got != tc.want {
				t.Errorf("verdict = %d, want %d", got, tc.want)
			}
		})
	}
}

// TestLiveConnSeesPings: only this end's pings (SYN), written in full,
// start the DeadPeerTimeout clock; answers to the peer's pings and data
// do not.
func TestLiveConnSeesPings(t *testing.T) {
	ping := func(flags byte) []byte { return []byte{0, yamuxTypePing, 0, flags, 0, 0, 0, 0, 0, 0, 0, 7} }
	for _, tc := range []struct {
		name  string
		write []byte
		want  bool
	}{
		{"ping", ping(yamuxFlagSYN), true},
		{"ping answer", ping(2), false},
		{"data header", []byte{0, 0, 0, 1, 0, 0, 0, 3, 0, 0, 0, 9}, false},
		{"a ping's bytes inside data", append(ping(yamuxFlagSYN), 'x'), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLiveConn(nopConn{})
			l.Write(tc.write)
			if got := l.pingWritten.Load() != 0; got != tc.want {
				t.Errorf("ping recorded: %v, want %v", got, tc.want)
			}
			if l.writeSince.Load() != 0 {
				t.Error("a finished write still counted as in progress")
			}
		})
	}
}

type nopConn struct{ net.Conn }

func (nopConn) Write(p []byte) (int, error) { return len(p), nil }

// scaled returns the default Config with every time divided by f: the
// tests below run the physics of slow links f times faster.
func scaled(f int) Config {
	cfg := DefaultConfig(testToken)
	cfg.KeepAliveInterval /= time.Duration(f)
	cfg.DeadPeerTimeout /= time.Duration(f)
	cfg.WriteTimeout /= time.Duration(f)
	return cfg
}

// TestSlowLinkBulk carries bulk transfers in 256 KiB writes (Join's
// frames) over links at 256 kbit/s and 2 Mbit/s, one way then the other,
// where one frame takes 8 s (resp. 1 s), far longer than DeadPeerTimeout:
// the session must not take the busy peer for dead. Time runs 4x faster
// (Config and rates scaled alike) to keep the test short; 8x left
// DeadPeerTimeout at 125 ms, within reach of scheduling delays under
// -race on 2 cores.
func TestSlowLinkBulk(t *testing.T) {
	const f = 4
	for _, link := range []struct {
		name  string
		bps   int // bits per second, unscaled
		bytes int // each way
	}{
		{"256 kbit/s", 256_000, 1 << 20},
		{"2 Mbit/s", 2_000_000, 2 << 20},
	} {
		for _, tr := range []transport{transports()[0], transports()[1]} {
			t.Run(link.name+"/"+tr.name, func(t *testing.T) {
				t.Parallel()
				rate := link.bps * f / 8 // bytes per second, scaled
				slow := transport{tr.name, func(t testing.TB) (net.Conn, net.Conn) {
					c, s := tr.pair(t)
					return newThrottled(c, rate), newThrottled(s, rate)
				}}
				client, server := sessions(t, slow, scaled(f), scaled(f))
				for _, dir := range []struct {
					name           string
					sender, reader *Session
				}{{"upload", client, server}, {"download", server, client}} {
					if err := transfer(dir.sender, dir.reader, link.bytes); err != nil {
						t.Fatalf("%s of %d MiB: %v (session errors: client %v, server %v)", dir.name, link.bytes>>20, err, client.Err(), server.Err())
					}
				}
				for name, s := range map[string]*Session{"client": client, "server": server} {
					select {
					case <-s.Done():
						t.Errorf("%s session closed after the transfers: %v", name, s.Err())
					default:
					}
				}
			})
		}
	}
}

// transfer sends n bytes in 256 KiB writes on a new stream from sender and
// reads them all at reader.
func transfer(sender, reader *Session, n int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	got := make(chan error, 1)
	go func() {
		st, err := reader.Accept(ctx)
		if err != nil {
			got <- err
			return
		}
		defer st.Close()
		m, err := io.Copy(io.Discard, st)
		if err == nil && m != int64(n) {
			err = fmt.Errorf("read %d bytes, want %d", m, n)
		}
		got <- err
	}()
	st, err := sender.Open(ctx, RoleConn, nil)
	if err != nil {
		return err
	}
	buf := make([]byte, 256<<10)
	for sent := 0; sent < n; sent += len(buf) {
		if _, err := st.Write(buf[:min(len(buf), n-sent)]); err != nil {
			return fmt.Errorf("write after %d bytes: %w", sent, err)
		}
	}
	st.CloseWrite()
	return <-got
}

// throttled writes at most rate bytes per second, in 1 KiB pieces, as a
// slow link delivers them: the reader gets bytes as they trickle in.
type throttled struct {
	net.Conn
	rate int
	mu   sync.Mutex
	next time.Time
}

func newThrottled(c net.Conn, rate int) *throttled { return &throttled{Conn: c, rate: rate} }

func (c *throttled) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for len(p) > 0 {
		k := min(len(p), 1<<10)
		if d := time.Until(c.next); d > 0 {
			time.Sleep(d)
		} else {
			c.next = time.Now()
		}
		m, err := c.Conn.Write(p[:k])
		n += m
		if err != nil {
			return n, err
		}
		c.next = c.next.Add(time.Duration(k) * time.Second / time.Duration(c.rate))
		p = p[k:]
	}
	return n, nil
}

// TestDeadPeerBlackholed cuts the link between two ends (nothing is
// delivered or read any more either way, as when a laptop loses its
// network) and checks that each end closes its session as a dead peer
// within its bound: KeepAliveInterval + DeadPeerTimeout (+ two checks)
// when this end's ping can go out, WriteTimeout when its writes block
// first (always so over net.Pipe, which buffers nothing). The slack covers
// scheduling under -race on a busy machine; a session left open would
// otherwise wait for nothing at all, or for yamux's 60 s queue bound.
func TestDeadPeerBlackholed(t *testing.T) {
	cfg := DefaultConfig(testToken)
	cfg.WriteTimeout = 2 * time.Second // the default 10 s only makes the test longer
	const slack = 2 * time.Second
	idleBound := cfg.KeepAliveInterval + cfg.DeadPeerTimeout + 2*checkInterval(cfg)
	loadBound := max(idleBound, cfg.WriteTimeout+checkInterval(cfg))
	for _, load := range []string{"idle", "upload", "download", "both ways"} {
		t.Run(load, func(t *testing.T) {
			forEachTransport(t, func(t *testing.T, tr transport) {
				t.Parallel()
				var link *relay
				client, server := sessions(t, transport{tr.name, func(t testing.TB) (net.Conn, net.Conn) {
					var c, s net.Conn
					c, s, link = newRelay(t, tr)
					return c, s
				}}, cfg, cfg)
				if load == "upload" || load == "both ways" {
					go flood(client, server)
				}
				if load == "download" || load == "both ways" {
					go flood(server, client)
				}
				if load != "idle" {
					// Let the bytes flow before the cut.
					if !link.carried(1<<20, 10*time.Second) {
						t.Fatal("no bulk through the link before the cut")
					}
				}
				cutAt := time.Now()
				link.cut()
				bound := loadBound
				if load == "idle" && tr.name != "pipe" {
					bound = idleBound
				}
				for name, s := range map[string]*Session{"client": client, "server": server} {
					select {
					case <-s.Done():
					case <-time.After(30 * time.Second): // hang guard
						t.Fatalf("%s never noticed the link was cut", name)
					}
					if took := time.Since(cutAt); took > bound+slack {
						t.Errorf("%s noticed the cut after %s, bound %s (+%s slack)", name, took.Round(time.Millisecond), bound, slack)
					}
					if !errors.Is(s.Err(), ErrPeerDead) {
						t.Errorf("%s session Err() = %v, want ErrPeerDead", name, s.Err())
					}
				}
			})
		})
	}
}

// flood writes to a new stream from a to b until the session ends.
func flood(a, b *Session) {
	ctx := context.Background()
	go func() {
		st, err := b.Accept(ctx)
		if err == nil {
			io.Copy(io.Discard, st)
		}
	}()
	st, err := a.Open(ctx, RoleConn, nil)
	if err != nil {
		return
	}
	buf := make([]byte, 256<<10)
	for {
		if _, err := st.Write(buf); err != nil {
			return
		}
	}
}

// relay is a link between two ends made of two pairs of tr, whose middle
// copies bytes both ways until cut; after the cut it reads and delivers
// nothing, and drops what it had in hand.
type relay struct {
	cutOnce sync.Once
	cutCh   chan struct{}
	mu      sync.Mutex
	bytes   int64
}

func newRelay(t testing.TB, tr transport) (client, server net.Conn, r *relay) {
	c, m1 := tr.pair(t)
	m2, s := tr.pair(t)
	r = &relay{cutCh: make(chan struct{})}
	done := make(chan struct{})
	t.Cleanup(func() {
		close(done)
		for _, x := range []net.Conn{c, m1, m2, s} {
			x.Close()
		}
	})
	pass := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			select {
			case <-r.cutCh:
				<-done
				return
			default:
			}
			n, err := src.Read(buf)
			select {
			case <-r.cutCh:
				<-done
				return
			default:
			}
			if n > 0 {
				if _, err := dst.Write(buf[:n]); err != nil {
					return
				}
				r.mu.Lock()
				r.bytes += int64(n)
				r.mu.Unlock()
			}
			if err != nil {
				return
			}
		}
	}
	go pass(m2, m1)
	go pass(m1, m2)
	return c, s, r
}

func (r *relay) cut() { r.cutOnce.Do(func() { close(r.cutCh) }) }

// carried waits until the relay has passed n bytes.
func (r *relay) carried(n int64, wait time.Duration) bool {
	for end := time.Now().Add(wait); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		r.mu.Lock()
		b := r.bytes
		r.mu.Unlock()
		if b >= n {
			return true
		}
	}
	return false
}
