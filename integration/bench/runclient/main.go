// Command runclient is the process `make bench` runs under `tether run`
// (and, for the baseline, straight against a raw port-forward): it measures
// one thing and prints it as one JSON line on stdout.
//
//	runclient -mode keepalive -url http://orders/orders/7 -n 1000
//	runclient -mode newconn   -url http://orders/orders/7 -n 1000
//	runclient -mode download  -url http://orders/bytes -bytes 104857600
//	runclient -mode upload    -url http://orders/upload -bytes 104857600
//	runclient -mode dns       -name orders -n 200
//	runclient -mode idle      -addr orders:80 -n 1000   (prints {"open":N}, then holds them until stdin closes)
//
// It is built with CGO_ENABLED=0: a static Go binary, whose resolver reads
// /etc/resolv.conf itself (the case LD_PRELOAD tools cannot serve).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"time"
)

type result struct {
	P50    time.Duration `json:"p50,omitempty"`
	P99    time.Duration `json:"p99,omitempty"`
	Errors int           `json:"errors"`
	N      int           `json:"n,omitempty"`
	MiBps  float64       `json:"mibps,omitempty"`
	Open   int           `json:"open,omitempty"`
	First  string        `json:"firstError,omitempty"`
}

func main() {
	mode := flag.String("mode", "keepalive", "keepalive, newconn, download, upload, dns or idle")
	url := flag.String("url", "", "the URL to request")
	addr := flag.String("addr", "", "idle: host:port to connect to")
	name := flag.String("name", "", "dns: the name to look up")
	n := flag.Int("n", 1000, "requests, lookups or connections")
	size := flag.Int64("bytes", 100<<20, "download/upload size")
	flag.Parse()
	ctx := context.Background()
	var r result
	var err error
	switch *mode {
	case "keepalive":
		r, err = requests(ctx, *url, *n, false)
	case "newconn":
		r, err = requests(ctx, *url, *n, true)
	case "download":
		r, err = download(ctx, *url, *size)
	case "upload":
		r, err = upload(ctx, *url, *size)
	case "dns":
		r = lookups(ctx, *name, *n)
	case "idle":
		r, err = idle(ctx, *addr, *n)
	default:
		err = fmt.Errorf("unknown mode %q", *mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "runclient:", err)
		os.Exit(1)
	}
	json.NewEncoder(os.Stdout).Encode(r)
}

// requests sends n sequential GETs (after a warm-up), on one keep-alive
// connection or on a new connection each.
func requests(ctx context.Context, url string, n int, fresh bool) (result, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DisableKeepAlives, tr.DisableCompression, tr.MaxIdleConnsPerHost = fresh, true, 1
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	get := func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	}
	for range 20 {
		if err := get(); err != nil {
			return result{}, fmt.Errorf("warm-up: %w", err)
		}
	}
	var r result
	lat := make([]time.Duration, 0, n)
	for range n {
		t0 := time.Now()
		if err := get(); err != nil {
			if r.Errors++; r.First == "" {
				r.First = err.Error()
			}
			continue
		}
		lat = append(lat, time.Since(t0))
	}
	r.N = len(lat)
	r.P50, r.P99 = percentiles(lat)
	return r, nil
}

func download(ctx context.Context, url string, size int64) (result, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"?n="+strconv.FormatInt(size, 10), nil)
	if err != nil {
		return result{}, err
	}
	t0 := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return result{}, err
	}
	defer resp.Body.Close()
	got, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return result{}, err
	}
	if got != size {
		return result{}, fmt.Errorf("downloaded %d bytes, want %d", got, size)
	}
	return result{MiBps: float64(got) / (1 << 20) / time.Since(t0).Seconds()}, nil
}

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func upload(ctx context.Context, url string, size int64) (result, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, io.LimitReader(zeros{}, size))
	if err != nil {
		return result{}, err
	}
	req.ContentLength = size
	t0 := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return result{}, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return result{}, fmt.Errorf("POST %s: %s", url, resp.Status)
	}
	return result{MiBps: float64(size) / (1 << 20) / time.Since(t0).Seconds()}, nil
}

// lookups resolves name n times with Go's own resolver (no cache in
// between: each lookup asks the nameserver).
func lookups(ctx context.Context, name string, n int) result {
	res := &net.Resolver{PreferGo: true}
	var r result
	lat := make([]time.Duration, 0, n)
	for range n {
		t0 := time.Now()
		if _, err := res.LookupHost(ctx, name); err != nil {
			if r.Errors++; r.First == "" {
				r.First = err.Error()
			}
			continue
		}
		lat = append(lat, time.Since(t0))
	}
	r.N = len(lat)
	r.P50, r.P99 = percentiles(lat)
	return r
}

// idle opens n connections to addr, reports how many are open, and holds
// them until stdin closes.
func idle(ctx context.Context, addr string, n int) (result, error) {
	var conns []net.Conn
	var r result
	d := net.Dialer{Timeout: 10 * time.Second}
	for range n {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			if r.Errors++; r.First == "" {
				r.First = err.Error()
			}
			continue
		}
		conns = append(conns, c)
	}
	r.Open = len(conns)
	json.NewEncoder(os.Stdout).Encode(r)
	bufio.NewReader(os.Stdin).ReadString('\n')
	for _, c := range conns {
		c.Close()
	}
	os.Exit(0)
	return r, nil
}

func percentiles(lat []time.Duration) (p50, p99 time.Duration) {
	if len(lat) == 0 {
		return 0, 0
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return lat[len(lat)/2], lat[len(lat)*99/100]
}
