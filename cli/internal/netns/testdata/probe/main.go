// Command probe is the CMD of the netns tests: a static Go binary (built
// with CGO_ENABLED=0 by the tests) that runs the steps given as arguments
// in order, prints "STEP ok DETAIL" or "STEP FAIL ERROR" for each, and
// exits 1 at the first failure.
//
//	resolve:NAME          Go's resolver over UDP (resolv.conf, search list)
//	resolvetcp:NAME       the same over TCP
//	get:ADDR              connect, read one line
//	echo:ADDR:N           send N random bytes, read them back, compare SHA-256
//	conc:ADDR:N           N connections open at once, each echoes its own line
//	refused:ADDR          the connection is refused
//	drain:ADDR            read until the end, which must be a reset
//	udp:ADDR              send a datagram "ping", print the answer
//	http:URL              GET, print the status and the body's first line
//	upload:URL:N          POST N random bytes to the demo's /upload, compare its SHA-256
//	download:URL:N        GET N bytes from the demo's /bytes, compare their SHA-256
//	httpconc:URL:N        N GETs at once, each on its own connection, all 200
//	httpbench:URL:N       N keep-alive GETs; prints p50
//	httpconnbench:URL:N   N GETs, a new connection each; prints p50 and errors
//	cat:PATH              print a file's first line
//	status                CapEff and NoNewPrivs of this process
//	listen:ADDR           listen, print "listening", answer one connection "hello from cmd"
//	pid                   print this process's pid
//	sigwait[:TERM]        print "ready", exit 42 on SIGINT (or SIGTERM)
//	bench:ADDR:N:BYTES    N keep-alive request/responses, then BYTES each way; prints p50 and MB/s
//	connbench:ADDR:N      N new connections, one request/response each; prints p50 and errors
//	dnsbench:NAME:N       N lookups; prints p50
//	hold:ADDR:N           open N connections, print "holding N", wait to be killed
//	reconnect:ADDR:N      N connections in a row from one local port, each read to
//	                      the server's close (the server closes first)
//	exit:N                exit with N
//	killself              die of SIGTERM
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	for _, step := range os.Args[1:] {
		op, arg, _ := strings.Cut(step, ":")
		detail, err := run(op, arg)
		if err != nil {
			fmt.Printf("%s FAIL %v\n", step, err)
			os.Exit(1)
		}
		fmt.Printf("%s ok %s\n", step, detail)
	}
}

func splitLast(s string) (string, int) {
	i := strings.LastIndex(s, ":")
	n, _ := strconv.Atoi(s[i+1:])
	return s[:i], n
}

func run(op, arg string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	switch op {
	case "resolve", "resolvetcp":
		r := &net.Resolver{PreferGo: true}
		if op == "resolvetcp" {
			r.Dial = func(ctx context.Context, _, addr string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "tcp", addr)
			}
		}
		addrs, err := r.LookupHost(ctx, arg)
		sort.Strings(addrs)
		return strings.Join(addrs, ","), err
	case "get":
		c, err := net.DialTimeout("tcp", arg, 10*time.Second)
		if err != nil {
			return "", err
		}
		defer c.Close()
		line, err := bufio.NewReader(c).ReadString('\n')
		return strings.TrimSpace(line), err
	case "echo":
		addr, n := splitLast(arg)
		return echo(addr, n)
	case "reconnect":
		addr, n := splitLast(arg)
		return reconnect(addr, n)
	case "conc":
		addr, n := splitLast(arg)
		return conc(addr, n)
	case "refused":
		start := time.Now()
		c, err := net.DialTimeout("tcp", arg, 20*time.Second)
		if err == nil {
			c.Close()
			return "", errors.New("connected")
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return "", fmt.Errorf("not refused: %w", err)
		}
		return fmt.Sprintf("refused after %v", time.Since(start).Round(time.Millisecond)), nil
	case "drain":
		c, err := net.DialTimeout("tcp", arg, 10*time.Second)
		if err != nil {
			return "", err
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		n, err := io.Copy(io.Discard, c)
		switch {
		case errors.Is(err, syscall.ECONNRESET):
			return fmt.Sprintf("reset after %d bytes", n), nil
		case err == nil:
			return "", fmt.Errorf("clean end after %d bytes", n)
		}
		return "", err
	case "udp":
		c, err := net.Dial("udp", arg)
		if err != nil {
			return "", err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "ping"); err != nil {
			return "", err
		}
		buf := make([]byte, 100)
		n, err := c.Read(buf)
		return string(buf[:n]), err
	case "http":
		cl := &http.Client{Timeout: 20 * time.Second}
		resp, err := cl.Get(arg)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		first, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
		return fmt.Sprintf("%d %s", resp.StatusCode, first), err
	case "upload":
		url, n := splitLast(arg)
		return upload(url, n)
	case "download":
		url, n := splitLast(arg)
		return download(url, n)
	case "httpconc":
		url, n := splitLast(arg)
		return httpConc(url, n)
	case "httpbench":
		url, n := splitLast(arg)
		return httpBench(url, n, false)
	case "httpconnbench":
		url, n := splitLast(arg)
		return httpBench(url, n, true)
	case "cat":
		b, err := os.ReadFile(arg)
		first, _, _ := strings.Cut(string(b), "\n")
		return first, err
	case "status":
		b, err := os.ReadFile("/proc/self/status")
		var out []string
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "CapEff:") || strings.HasPrefix(l, "CapPrm:") || strings.HasPrefix(l, "NoNewPrivs:") {
				f := strings.Fields(l)
				out = append(out, strings.TrimSuffix(f[0], ":")+"="+f[len(f)-1])
			}
		}
		return strings.Join(out, " "), err
	case "listen":
		l, err := net.Listen("tcp", arg)
		if err != nil {
			return "", err
		}
		defer l.Close()
		fmt.Println("listening")
		c, err := l.Accept()
		if err != nil {
			return "", err
		}
		defer c.Close()
		_, err = io.WriteString(c, "hello from cmd\n")
		return "served", err
	case "pid":
		return strconv.Itoa(os.Getpid()), nil
	case "sigwait":
		ch := make(chan os.Signal, 1)
		if arg == "TERM" {
			signal.Notify(ch, syscall.SIGTERM)
		} else {
			signal.Notify(ch, os.Interrupt)
		}
		fmt.Println("ready")
		<-ch
		os.Exit(42)
	case "bench":
		parts := strings.Split(arg, ":")
		addr := strings.Join(parts[:len(parts)-2], ":")
		n, _ := strconv.Atoi(parts[len(parts)-2])
		size, _ := strconv.Atoi(parts[len(parts)-1])
		return bench(addr, n, size)
	case "up", "down":
		addr, size := splitLast(arg)
		return bulk(op, addr, size)
	case "connbench":
		addr, n := splitLast(arg)
		return connBench(addr, n)
	case "dnsbench":
		name, n := splitLast(arg)
		lat := make([]time.Duration, n)
		r := &net.Resolver{PreferGo: true}
		for i := range n {
			start := time.Now()
			if _, err := r.LookupHost(ctx, name); err != nil {
				return "", err
			}
			lat[i] = time.Since(start)
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		return fmt.Sprintf("p50_ns=%d", lat[n/2].Nanoseconds()), nil
	case "hold":
		addr, n := splitLast(arg)
		conns := make([]net.Conn, 0, n)
		for range n {
			c, err := net.DialTimeout("tcp", addr, 10*time.Second)
			if err != nil {
				return "", err
			}
			conns = append(conns, c)
		}
		fmt.Printf("holding %d\n", len(conns))
		select {}
	case "exit":
		n, _ := strconv.Atoi(arg)
		os.Exit(n)
	case "killself":
		_ = syscall.Kill(os.Getpid(), syscall.SIGTERM)
		time.Sleep(10 * time.Second)
	}
	return "", fmt.Errorf("unknown step %q", op)
}

func echo(addr string, n int) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	data := make([]byte, n)
	_, _ = rand.Read(data)
	sent := sha256.Sum256(data)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		errc <- err
	}()
	h := sha256.New()
	got, err := io.Copy(h, c)
	if err != nil {
		return "", err
	}
	if err := <-errc; err != nil {
		return "", err
	}
	if got != int64(n) || !bytes.Equal(h.Sum(nil), sent[:]) {
		return "", fmt.Errorf("got %d bytes back, checksum differs", got)
	}
	return fmt.Sprintf("%d bytes sha256 %x", n, sent[:4]), nil
}

func conc(addr string, n int) (string, error) {
	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conns[i], errs[i] = net.DialTimeout("tcp", addr, 20*time.Second)
		}()
	}
	wg.Wait()
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	// All n are open now; each echoes its own line.
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := fmt.Sprintf("conn %d\n", i)
			if _, err := io.WriteString(conns[i], msg); err != nil {
				errs[i] = err
				return
			}
			line, err := bufio.NewReader(conns[i]).ReadString('\n')
			if err == nil && line != msg {
				err = fmt.Errorf("conn %d got %q", i, line)
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	return fmt.Sprintf("%d served", n), nil
}

// bench sends n 64-byte requests on one connection (each answered by the
// echo), then size bytes each way.
func bench(addr string, n, size int) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	buf := make([]byte, 64)
	lat := make([]time.Duration, n)
	for i := range n {
		start := time.Now()
		if _, err := c.Write(buf); err != nil {
			return "", err
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			return "", err
		}
		lat[i] = time.Since(start)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	start := time.Now()
	errc := make(chan error, 1)
	go func() {
		_, err := io.Copy(c, io.LimitReader(zero{}, int64(size)))
		errc <- err
	}()
	got, err := io.CopyN(io.Discard, c, int64(size))
	if err != nil {
		return "", fmt.Errorf("read %d: %w", got, err)
	}
	if err := <-errc; err != nil {
		return "", err
	}
	secs := time.Since(start).Seconds()
	return fmt.Sprintf("p50_ns=%d mbps=%.1f", lat[n/2].Nanoseconds(), float64(size)/secs/1e6), nil
}

// connBench makes n connections, one 64-byte request/response each.
func connBench(addr string, n int) (string, error) {
	lat := make([]time.Duration, n)
	buf := make([]byte, 64)
	errs := 0
	for i := range n {
		start := time.Now()
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			errs++
			continue
		}
		_, err = c.Write(buf)
		if err == nil {
			_, err = io.ReadFull(c, buf)
		}
		c.Close()
		if err != nil {
			errs++
		}
		lat[i] = time.Since(start)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return fmt.Sprintf("p50_ns=%d errors=%d", lat[n/2].Nanoseconds(), errs), nil
}

func upload(url string, n int) (string, error) {
	data := make([]byte, n)
	_, _ = rand.Read(data)
	sum := sha256.Sum256(data)
	start := time.Now()
	resp, err := http.Post(url, "application/octet-stream", bytes.NewReader(data))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var got struct {
		Bytes  int    `json:"bytes"`
		SHA256 string `json:"sha256"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		return "", err
	}
	if got.Bytes != n || got.SHA256 != hex.EncodeToString(sum[:]) {
		return "", fmt.Errorf("the server got %d bytes with sha256 %s", got.Bytes, got.SHA256)
	}
	return fmt.Sprintf("%d bytes mbps=%.1f", n, float64(n)/time.Since(start).Seconds()/1e6), nil
}

// download checks the demo's /bytes pattern: byte(i) within each 64 KiB.
func download(url string, n int) (string, error) {
	start := time.Now()
	resp, err := http.Get(fmt.Sprintf("%s?n=%d", url, n))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	h := sha256.New()
	got, err := io.Copy(h, resp.Body)
	if err != nil {
		return "", err
	}
	want := sha256.New()
	chunk := make([]byte, 64<<10)
	for i := range chunk {
		chunk[i] = byte(i)
	}
	for left := n; left > 0; left -= len(chunk) {
		want.Write(chunk[:min(left, len(chunk))])
	}
	if got != int64(n) || !bytes.Equal(h.Sum(nil), want.Sum(nil)) {
		return "", fmt.Errorf("got %d bytes, checksum differs", got)
	}
	return fmt.Sprintf("%d bytes mbps=%.1f", n, float64(n)/time.Since(start).Seconds()/1e6), nil
}

func httpConc(url string, n int) (string, error) {
	cl := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := cl.Get(url)
			if err != nil {
				errs[i] = err
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				errs[i] = fmt.Errorf("status %d", resp.StatusCode)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	return fmt.Sprintf("%d served", n), nil
}

func httpBench(url string, n int, newConn bool) (string, error) {
	cl := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: newConn}}
	lat := make([]time.Duration, 0, n)
	errs := 0
	for range n {
		start := time.Now()
		resp, err := cl.Get(url)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		if err != nil {
			if errs == 0 {
				fmt.Fprintln(os.Stderr, "first error:", err)
			}
			errs++
			continue
		}
		lat = append(lat, time.Since(start))
	}
	if len(lat) == 0 {
		return "", fmt.Errorf("all %d failed", n)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return fmt.Sprintf("p50_ns=%d errors=%d", lat[len(lat)/2].Nanoseconds(), errs), nil
}

// bulk sends ("up") or receives ("down") size bytes on one connection to
// the bulk server (harness_linux_test.go's bulkServer): the time runs to
// the server's acknowledgement or to the last byte received.
func bulk(op, addr string, size int) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	start := time.Now()
	if _, err := fmt.Fprintf(c, "%s %d\n", op, size); err != nil {
		return "", err
	}
	var got int64
	if op == "up" {
		if _, err := io.Copy(c, io.LimitReader(zero{}, int64(size))); err != nil {
			return "", err
		}
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			return "", err
		}
		ack, err := io.ReadAll(c)
		if err != nil {
			return "", err
		}
		if want := fmt.Sprintf("%d\n", size); string(ack) != want {
			return "", fmt.Errorf("the server acknowledged %q, want %q", ack, want)
		}
	} else if got, err = io.Copy(io.Discard, c); err != nil || got != int64(size) {
		return "", fmt.Errorf("received %d of %d bytes: %v", got, size, err)
	}
	return fmt.Sprintf("mbps=%.1f", float64(size)/time.Since(start).Seconds()/1e6), nil
}

type zero struct{}

func (zero) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// reconnect connects n times in a row to addr from the same local port
// (SO_REUSEADDR), reading each connection to the server's close: the
// server's side of each 4-tuple is left in TIME_WAIT when the next SYN
// comes.
func reconnect(addr string, n int) (string, error) {
	port := 0
	for i := range n {
		d := net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{Port: port},
			Control: func(_, _ string, rc syscall.RawConn) error {
				var serr error
				err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1) })
				return errors.Join(err, serr)
			}}
		var c net.Conn
		var err error
		for try := 0; try < 50; try++ {
			if c, err = d.Dial("tcp", addr); err == nil || !errors.Is(err, syscall.EADDRNOTAVAIL) && !errors.Is(err, syscall.EADDRINUSE) {
				break
			}
			time.Sleep(10 * time.Millisecond) // the last connection's close is still going on
		}
		if err != nil {
			return "", fmt.Errorf("connection %d from port %d: %w", i+1, port, err)
		}
		port = c.LocalAddr().(*net.TCPAddr).Port
		if _, err := io.Copy(io.Discard, c); err != nil {
			c.Close()
			return "", fmt.Errorf("connection %d: %w", i+1, err)
		}
		c.Close()
	}
	return fmt.Sprintf("%d connections from port %d", n, port), nil
}
