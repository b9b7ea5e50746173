// Package replay sends recorded HTTP exchanges again, to the laptop, to a
// URL or into the cluster, paced as asked, and compares each answer with
// the recorded one. The daemon runs it; the CLI prints its results.
package replay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tetherkube/tether/recording"
)

// Options shape a replay.
type Options struct {
	// Base is where requests go: scheme and host (and a path prefix); the
	// recorded request target is appended.
	Base *url.URL
	// KeepHost sends the recorded Host header instead of Base's host.
	KeepHost bool
	// BaseFor, when set, gives each exchange's destination instead of Base.
	BaseFor func(*recording.Exchange) (*url.URL, error)
	// ToRecordedHost sends each request to the host its caller addressed
	// (its Host header, port 80 by default) instead of Base.
	ToRecordedHost bool
	// Rate sends at most this many requests per second (0: no limit).
	Rate float64
	// Speed keeps the recorded spacing between requests, divided by Speed
	// (0: do not keep it). Rate and Speed exclude each other.
	Speed float64
	// Concurrency is how many requests may be in flight (default 1).
	Concurrency int
	// Count sends the selection this many times (default 1).
	Count int
	// Header sets these headers on every request, replacing recorded ones:
	// the way to give values for redacted headers, which are otherwise
	// left out.
	Header http.Header
	// Diff compares each answer with the recorded one, ignoring the
	// VolatileHeaders and IgnoreHeaders.
	Diff          bool
	IgnoreHeaders []string
	// Timeout bounds each request (default 30s).
	Timeout time.Duration
	// MaxBody is the most of an answer's body kept to compare (Diff, or
	// an Expect that reads it); default DefaultMaxBody. Otherwise answers
	// are read and dropped.
	MaxBody int64
	// Expect, when set, is the failure being reproduced: each answer that
	// meets all of its conditions counts as the failure recurring
	// (Result.Recurred). ExpectRecorded, without Expect, takes each
	// exchange's recorded answer as its failure: the same status (and
	// grpc-status), or no answer when none was recorded.
	Expect         []Expect
	ExpectRecorded bool
}

// expecting reports whether answers are checked for a recurring failure.
func (o Options) expecting() bool { return len(o.Expect) > 0 || o.ExpectRecorded }

// recurred reports whether a, the answer to e, shows the failure again.
func (o Options) recurred(e *recording.Exchange, a Answer) bool {
	if len(o.Expect) == 0 {
		if e.Response == nil {
			return a.Error != ""
		}
		return a.Error == "" && a.Status == e.Response.Status && a.GRPCStatus == e.Response.GRPCStatus()
	}
	for _, x := range o.Expect {
		if !x.Holds(a) {
			return false
		}
	}
	return true
}

// ReplayHeader marks every replayed request with the name of the exchange
// it replays, so that an agent recording the destination records the
// replay as one ("requests list" shows it) and a later selection by filter
// can leave replays out (tether replay and reproduce do).
const ReplayHeader = "X-Tether-Replay"

// IsReplay reports whether e is a replayed request's exchange.
func IsReplay(e *recording.Exchange) bool { return e.Request.Header.Get(ReplayHeader) != "" }

// DefaultMaxBody is Options.MaxBody's default.
const DefaultMaxBody = 16 << 20

// Result is one replayed request.
type Result struct {
	// Ref names the recorded exchange replayed; Round counts from 1.
	Ref     string        `json:"ref"`
	Round   int           `json:"round"`
	Method  string        `json:"method"`
	Target  string        `json:"target"`
	Status  int           `json:"status"`
	Latency time.Duration `json:"latencyNanos"`
	Error   string        `json:"error,omitempty"`
	Diff    *Diff         `json:"diff,omitempty"`
	// Skipped says why the request was not sent.
	Skipped string `json:"skipped,omitempty"`
	// GRPCStatus is a gRPC answer's status code ("0" is OK).
	GRPCStatus string `json:"grpcStatus,omitempty"`
	// Recurred says the answer showed the failure being reproduced
	// (Options.Expect); nil when not checked.
	Recurred *bool `json:"recurred,omitempty"`
}

// Summary is the whole replay.
type Summary struct {
	Sent      int            `json:"sent"`
	Errors    int            `json:"errors"`
	Skipped   int            `json:"skipped"`
	ByStatus  map[string]int `json:"byStatus"`
	P50       time.Duration  `json:"p50Nanos"`
	P90       time.Duration  `json:"p90Nanos"`
	P99       time.Duration  `json:"p99Nanos"`
	Max       time.Duration  `json:"maxNanos"`
	Elapsed   time.Duration  `json:"elapsedNanos"`
	PerSecond float64        `json:"perSecond"`
	// Differing counts the answers that differ from the recording (Diff).
	Differing int `json:"differing"`
	// Recurred counts the answers that showed the failure again
	// (Options.Expect).
	Recurred int `json:"recurred"`
}

// ErrBadOptions: the options cannot work together.
var ErrBadOptions = errors.New("bad replay options")

// Validate checks the options.
func (o Options) Validate() error {
	switch {
	case !o.ToRecordedHost && o.BaseFor == nil && (o.Base == nil || o.Base.Host == ""):
		return fmt.Errorf("%w: no destination", ErrBadOptions)
	case o.Rate < 0 || o.Speed < 0:
		return fmt.Errorf("%w: rate and speed must be positive", ErrBadOptions)
	case o.Rate > 0 && o.Speed > 0:
		return fmt.Errorf("%w: --rate and --speed exclude each other: choose one", ErrBadOptions)
	case o.Concurrency < 0 || o.Count < 0:
		return fmt.Errorf("%w: concurrency and count must not be negative", ErrBadOptions)
	}
	return nil
}

// hopByHop are not replayed: they describe the recorded connection.
var hopByHop = map[string]bool{"Connection": true, "Keep-Alive": true, "Transfer-Encoding": true, "Te": true,
	"Upgrade": true, "Proxy-Connection": true, "Content-Length": true, "Trailer": true}

// Request builds the request that replays e against o.Base. A redacted
// header is left out unless o.Header gives it; a truncated body cannot be
// replayed faithfully and is an error. An exchange replayed as HTTP/2
// keeps "Te: trailers", which gRPC asks for; send it with a client from
// http2Client.
func Request(ctx context.Context, e *recording.Exchange, o Options) (*http.Request, error) {
	if e.Request.Truncated {
		return nil, fmt.Errorf("its body was recorded only in part (%d of %d bytes); record with a larger --body-cap to replay it",
			len(e.Request.Body), e.Request.BodySize)
	}
	base := o.Base
	if o.BaseFor != nil {
		b, err := o.BaseFor(e)
		if err != nil {
			return nil, err
		}
		base = b
	}
	if o.ToRecordedHost {
		if e.Request.Host == "" {
			return nil, errors.New("the recorded request has no Host header to send it to")
		}
		base = &url.URL{Scheme: "http", Host: e.Request.Host}
	}
	u := *base
	target, err := url.ParseRequestURI(e.Request.Target)
	if err != nil {
		return nil, fmt.Errorf("recorded target %q: %w", e.Request.Target, err)
	}
	u.Path = strings.TrimSuffix(base.Path, "/") + target.Path
	u.RawQuery = target.RawQuery
	req, err := http.NewRequestWithContext(ctx, e.Request.Method, u.String(), bytes.NewReader(e.Request.Body))
	if err != nil {
		return nil, err
	}
	redacted := map[string]bool{}
	for _, r := range e.Request.Redacted {
		redacted[http.CanonicalHeaderKey(r)] = true
	}
	for k, vs := range e.Request.Header {
		ck := http.CanonicalHeaderKey(k)
		if ck == "Te" && speaksHTTP2(e) {
			if slices.Contains(vs, "trailers") {
				req.Header.Set("Te", "trailers")
			}
			continue
		}
		if hopByHop[ck] || ck == "Host" || redacted[ck] {
			continue
		}
		for _, v := range vs {
			if v != recording.Redacted {
				req.Header.Add(ck, v)
			}
		}
	}
	for k, vs := range o.Header {
		req.Header[http.CanonicalHeaderKey(k)] = vs
	}
	req.ContentLength = int64(len(e.Request.Body))
	if o.KeepHost && e.Request.Host != "" {
		req.Host = e.Request.Host
	}
	return req, nil
}

// Run replays exchanges (oldest first) with client, calling emit with each
// result as it comes (from one goroutine at a time). Exchanges recorded as
// HTTP/2 (h2c, gRPC; see speaksHTTP2) go out as HTTP/2 through a clone of
// client's transport (http2Client), so through the same dial function.
func Run(ctx context.Context, client *http.Client, exchanges []*recording.Exchange, ref func(*recording.Exchange) string, o Options, emit func(Result) error) (Summary, error) {
	if err := o.Validate(); err != nil {
		return Summary{}, err
	}
	if o.Concurrency == 0 {
		o.Concurrency = 1
	}
	if o.Count == 0 {
		o.Count = 1
	}
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Second
	}
	if o.MaxBody <= 0 {
		o.MaxBody = DefaultMaxBody
	}
	sorted := append([]*recording.Exchange(nil), exchanges...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Time.Before(sorted[j].Time) })

	type job struct {
		e     *recording.Exchange
		round int
	}
	jobs := make(chan job)
	var mu sync.Mutex
	sum := Summary{ByStatus: map[string]int{}}
	var latencies []time.Duration
	var emitErr error
	report := func(r Result) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.Skipped != "":
			sum.Skipped++
		case r.Error != "":
			sum.Errors++
			sum.ByStatus["error"]++
		default:
			sum.Sent++
			sum.ByStatus[fmt.Sprint(r.Status)]++
			latencies = append(latencies, r.Latency)
		}
		if !r.Diff.Empty() {
			sum.Differing++
		}
		if r.Recurred != nil && *r.Recurred {
			sum.Recurred++
		}
		if emitErr == nil {
			emitErr = emit(r)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	clients := [2]*http.Client{client, client}
	if slices.ContainsFunc(sorted, speaksHTTP2) {
		clients[1] = http2Client(client)
		defer clients[1].CloseIdleConnections()
	}
	var wg sync.WaitGroup
	for range o.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				c := clients[0]
				if speaksHTTP2(j.e) {
					c = clients[1]
				}
				report(one(ctx, c, j.e, ref(j.e), j.round, o))
			}
		}()
	}
	start := time.Now()
	pace := newPacer(o, start)
feed:
	for round := 1; round <= o.Count; round++ {
		for i, e := range sorted {
			if err := pace.wait(ctx, sorted, i, round); err != nil {
				break feed
			}
			select {
			case jobs <- job{e, round}:
			case <-ctx.Done():
				break feed
			}
		}
	}
	close(jobs)
	wg.Wait()
	sum.Elapsed = time.Since(start)
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	if n := len(latencies); n > 0 {
		sum.P50, sum.P90, sum.P99, sum.Max = latencies[n*50/100], latencies[n*90/100], latencies[n*99/100], latencies[n-1]
		sum.PerSecond = float64(n) / sum.Elapsed.Seconds()
	}
	if emitErr != nil {
		return sum, emitErr
	}
	return sum, ctx.Err()
}

// one replays a single exchange.
func one(ctx context.Context, client *http.Client, e *recording.Exchange, ref string, round int, o Options) Result {
	r := Result{Ref: ref, Round: round, Method: e.Request.Method, Target: e.Request.Target}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	req, err := Request(ctx, e, o)
	if err != nil {
		r.Skipped = err.Error()
		return r
	}
	req.Header.Set(ReplayHeader, ref)
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		r.Latency, r.Error = time.Since(start), err.Error()
		r.check(e, o, Answer{Latency: r.Latency, Error: r.Error})
		return r
	}
	// Keep at most MaxBody bytes, and only to compare them; a longer
	// answer is not read to its end.
	var body []byte
	long := false
	if o.Diff || slices.ContainsFunc(o.Expect, Expect.NeedsBody) {
		body, err = io.ReadAll(io.LimitReader(resp.Body, o.MaxBody+1))
		if long = int64(len(body)) > o.MaxBody; long {
			body = body[:o.MaxBody]
		}
	} else {
		_, err = io.Copy(io.Discard, resp.Body)
	}
	resp.Body.Close()
	r.Latency, r.Status = time.Since(start), resp.StatusCode
	if err != nil {
		r.Error = "reading the answer: " + err.Error()
		r.check(e, o, Answer{Status: r.Status, Latency: r.Latency, Error: r.Error})
		return r
	}
	live := &recording.Message{Status: resp.StatusCode, Header: resp.Header, Trailer: resp.Trailer, Body: body, BodySize: int64(len(body))}
	if isGRPC(resp.Header) {
		r.GRPCStatus = live.GRPCStatus()
	}
	r.check(e, o, Answer{Status: r.Status, GRPCStatus: r.GRPCStatus, Latency: r.Latency, Body: body})
	if o.Diff {
		r.Diff = Compare(e.Response, live, o.IgnoreHeaders)
		if long {
			r.Diff.Body = nil
			r.Diff.NotCompared = append(r.Diff.NotCompared, fmt.Sprintf("body: the replayed answer is longer than %d bytes", o.MaxBody))
		}
	}
	return r
}

// check records whether a shows the failure again, when o asks.
func (r *Result) check(e *recording.Exchange, o Options, a Answer) {
	if o.expecting() {
		v := o.recurred(e, a)
		r.Recurred = &v
	}
}

// pacer spaces requests: a fixed rate, or the recorded spacing scaled.
type pacer struct {
	o     Options
	start time.Time
	sent  int
}

func newPacer(o Options, start time.Time) *pacer { return &pacer{o: o, start: start} }

func (p *pacer) wait(ctx context.Context, sorted []*recording.Exchange, i, round int) error {
	at := p.start.Add(p.offset(sorted, i, round))
	p.sent++
	if d := time.Until(at); d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return ctx.Err()
}

// offset is when, after the start, the next request is due: the sent-th
// at a fixed rate, or request i of round at its recorded place scaled by
// the speed (rounds follow each other, each as long as the recording).
func (p *pacer) offset(sorted []*recording.Exchange, i, round int) time.Duration {
	switch {
	case p.o.Rate > 0:
		return time.Duration(float64(p.sent) / p.o.Rate * float64(time.Second))
	case p.o.Speed > 0:
		span := sorted[len(sorted)-1].Time.Sub(sorted[0].Time)
		recorded := time.Duration(round-1)*span + sorted[i].Time.Sub(sorted[0].Time)
		return time.Duration(float64(recorded) / p.o.Speed)
	}
	return 0
}
