package demoapp

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The load commands the integration tests run from a client pod, to check
// that bytes cross an intercept intact and that many connections do.

// uploadCommand POSTs n pseudo-random bytes to url+"/upload" and prints what it
// sent and what the server says it received.
func uploadCommand(ctx context.Context, url string, n int64, stdout io.Writer) error {
	h := sha256.New()
	body := io.TeeReader(io.LimitReader(&patternReader{rng: rand.NewChaCha8([32]byte{7})}, n), h)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/upload", body)
	if err != nil {
		return err
	}
	req.ContentLength = n
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	fmt.Fprintf(stdout, "sent %d sha256 %s\nstatus %d\n%s", n, hex.EncodeToString(h.Sum(nil)), resp.StatusCode, answer)
	return nil
}

// download GETs url and prints how many bytes came and their SHA-256.
func download(ctx context.Context, url string, stdout io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("download: %w", err)
	}
	defer resp.Body.Close()
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		return fmt.Errorf("download after %d bytes: %w", n, err)
	}
	fmt.Fprintf(stdout, "received %d sha256 %s served-by %s\n", n, hex.EncodeToString(h.Sum(nil)), resp.Header.Get("X-Served-By"))
	return nil
}

// parallel sends n GETs at once, each on a connection of its own, and
// prints how many succeeded and who served them.
func parallel(ctx context.Context, url string, n int, stdout io.Writer) error {
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, Proxy: http.ProxyFromEnvironment}, Timeout: 60 * time.Second}
	var ok atomic.Int64
	var mu sync.Mutex
	servedBy := map[string]int{}
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			resp, err := client.Do(req)
			if err != nil {
				firstErr.CompareAndSwap(nil, err.Error())
				return
			}
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode == http.StatusOK {
				ok.Add(1)
				mu.Lock()
				servedBy[resp.Header.Get("X-Served-By")]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	fmt.Fprintf(stdout, "ok %d of %d served-by %v\n", ok.Load(), n, servedBy)
	if e := firstErr.Load(); e != nil {
		fmt.Fprintf(stdout, "first error: %s\n", e)
	}
	return nil
}

// keepalive sends n GETs one after another and prints how many succeeded
// and on how many of them the client reused its connection.
func keepalive(ctx context.Context, url string, n int, stdout io.Writer) error {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1, Proxy: http.ProxyFromEnvironment}, Timeout: 30 * time.Second}
	ok, reused := 0, 0
	for range n {
		var wasReused bool
		trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) { wasReused = info.Reused }}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("keepalive request %d: %w", ok+1, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			ok++
		}
		if wasReused {
			reused++
		}
	}
	fmt.Fprintf(stdout, "ok %d of %d reused %d\n", ok, n, reused)
	return nil
}

// patternReader yields pseudo-random bytes, the same for the same seed.
type patternReader struct{ rng *rand.ChaCha8 }

func (p *patternReader) Read(b []byte) (int, error) { return p.rng.Read(b) }

func atoi64(s string) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a non-negative count", s)
	}
	return n, nil
}

// latency sends n GETs one after another on one keep-alive connection (after
// a warm-up) and prints their p50 and p99 in microseconds.
func latency(ctx context.Context, url string, n int, stdout io.Writer) error {
	if n < 1 {
		return fmt.Errorf("latency needs at least 1 request")
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1, Proxy: http.ProxyFromEnvironment}, Timeout: 30 * time.Second}
	get := func() error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		return resp.Body.Close()
	}
	for range 50 {
		if err := get(); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	lat := make([]time.Duration, n)
	start := time.Now()
	for i := range lat {
		t0 := time.Now()
		if err := get(); err != nil {
			return fmt.Errorf("request %d: %w", i+1, err)
		}
		lat[i] = time.Since(t0)
	}
	rate := float64(n) / time.Since(start).Seconds()
	slices.Sort(lat)
	fmt.Fprintf(stdout, "p50_us %d p99_us %d per_s %.0f\n", lat[n/2].Microseconds(), lat[n*99/100].Microseconds(), rate)
	return nil
}

// throughput downloads url and prints MiB/s.
func throughput(ctx context.Context, url string, stdout io.Writer) error {
	t0 := time.Now()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "bytes %d mib_per_s %.1f\n", n, float64(n)/(1<<20)/time.Since(t0).Seconds())
	return nil
}
