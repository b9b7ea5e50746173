package demoapp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Main runs the demo binary's subcommands:
//
//	serve [ADDR]     the orders service (default :8080)
//	get URL          an HTTP GET; prints the status line and body
//	post URL [BODY]  an HTTP POST of BODY (JSON); prints the status line and body
//	lookup NAME      a DNS lookup through the pod's resolv.conf
//	upload URL N     POST N pseudo-random bytes to URL/upload; print both checksums
//	download URL     GET URL; print the byte count and checksum
//	parallel URL N   N GETs at once, a connection each; print the successes
//	keepalive URL N  N GETs on one connection; print successes and reuses
//	latency URL N    N GETs on one connection; print p50 and p99
//	throughput URL   GET URL; print MiB/s
//	send ADDR TEXT   write TEXT (Go escapes allowed) raw; print the answer
//	relay LISTEN TARGET  relay each connection to TARGET, nothing else
//	                 (io.Copy each way: the floor of any hop in front of
//	                 an app, for the bench's cost rows)
//	sleep            wait forever (a client pod to exec into)
func Main(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: tether-demo serve [ADDR] | get URL | post URL [BODY] | lookup NAME | sleep")
	}
	switch args[0] {
	case "serve":
		addr := ":8080"
		if len(args) > 1 {
			addr = args[1]
		}
		return ServeCommand(ctx, addr, stdout)
	case "get":
		if len(args) < 2 {
			return errors.New("usage: tether-demo get URL [NAME:VALUE...]")
		}
		return request(ctx, http.MethodGet, args[1], "", args[2:], stdout)
	case "post":
		if len(args) < 2 {
			return errors.New("usage: tether-demo post URL [BODY [NAME:VALUE...]]")
		}
		body := ""
		if len(args) >= 3 {
			body = args[2]
		}
		var headers []string
		if len(args) > 3 {
			headers = args[3:]
		}
		return request(ctx, http.MethodPost, args[1], body, headers, stdout)
	case "send":
		if len(args) != 3 {
			return errors.New("usage: tether-demo send HOST:PORT TEXT (Go escapes such as \\r\\n and \\x00 allowed)")
		}
		return send(ctx, args[1], args[2], stdout)
	case "upload", "parallel", "keepalive", "latency":
		if len(args) != 3 {
			return fmt.Errorf("usage: tether-demo %s URL COUNT", args[0])
		}
		n, err := atoi64(args[2])
		if err != nil {
			return err
		}
		switch args[0] {
		case "upload":
			return uploadCommand(ctx, args[1], n, stdout)
		case "parallel":
			return parallel(ctx, args[1], int(n), stdout)
		case "latency":
			return latency(ctx, args[1], int(n), stdout)
		default:
			return keepalive(ctx, args[1], int(n), stdout)
		}
	case "download", "throughput":
		if len(args) != 2 {
			return fmt.Errorf("usage: tether-demo %s URL", args[0])
		}
		if args[0] == "throughput" {
			return throughput(ctx, args[1], stdout)
		}
		return download(ctx, args[1], stdout)
	case "lookup":
		if len(args) != 2 {
			return errors.New("usage: tether-demo lookup NAME")
		}
		r := &net.Resolver{PreferGo: true}
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		addrs, err := r.LookupHost(ctx, args[1])
		if err != nil {
			return fmt.Errorf("lookup %s: %w", args[1], err)
		}
		fmt.Fprintln(stdout, args[1], "->", addrs)
		return nil
	case "relay":
		if len(args) != 3 {
			return errors.New("usage: tether-demo relay LISTEN TARGET")
		}
		return relay(ctx, args[1], args[2])
	case "sleep":
		<-ctx.Done()
		return nil
	default:
		return fmt.Errorf("unknown subcommand %q: use serve, get, lookup or sleep", args[0])
	}
}

// send writes raw bytes to addr, half-closes, and prints what comes back:
// the tests send malformed HTTP and binary garbage with it.
func send(ctx context.Context, addr, text string, stdout io.Writer) error {
	raw, err := strconv.Unquote(`"` + strings.ReplaceAll(text, `"`, `\"`) + `"`)
	if err != nil {
		return fmt.Errorf("text %q: %w", text, err)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		return err
	}
	c.(*net.TCPConn).CloseWrite()
	_, err = io.Copy(stdout, c)
	return err
}

func request(ctx context.Context, method, url, body string, headers []string, stdout io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	steps, ctx := newRequestSteps(ctx)
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, h := range headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok {
			return fmt.Errorf("header %q: write NAME:VALUE", h)
		}
		req.Header.Add(k, strings.TrimSpace(v))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w (%s)", method, url, err, steps)
	}
	defer resp.Body.Close()
	fmt.Fprintf(stdout, "%s %s\nX-Served-By: %s\n", resp.Proto, resp.Status, resp.Header.Get("X-Served-By"))
	_, err = io.Copy(stdout, resp.Body)
	return err
}

// relay accepts on listen and joins each connection to a new one to
// target, copying each way until both ends close.
func relay(ctx context.Context, listen, target string) error {
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		go func() {
			defer c.Close()
			u, err := net.Dial("tcp", target)
			if err != nil {
				return
			}
			defer u.Close()
			done := make(chan struct{})
			go func() {
				io.Copy(u, c)
				u.(*net.TCPConn).CloseWrite()
				close(done)
			}()
			io.Copy(c, u)
			c.(*net.TCPConn).CloseWrite()
			<-done
		}()
	}
}
