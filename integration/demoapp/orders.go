// Package demoapp is the small "orders" HTTP service that tether's demo and
// integration tests run in the cluster and intercept, plus the client
// commands the tests run from a pod (get, lookup).
package demoapp

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Order is one order in the store.
type Order struct {
	ID     int      `json:"id"`
	Item   string   `json:"item"`
	Qty    int      `json:"qty"`
	Coupon string   `json:"coupon,omitempty"`
	Total  *float64 `json:"total,omitempty"`
}

// Server is the orders service. Its checkout endpoint fails for the seeded
// order 42, whose coupon the pricing code cannot handle: a deterministic bug
// for tether's intercept and replay demos to find and fix.
type Server struct {
	// Name identifies who answered (pod name, or "laptop").
	Name string
	// Fixed carries the fix for the checkout bug (coupon HALFOFF has no
	// discount rule): the code a developer runs after fixing it
	// (DEMO_FIXED=1 for `serve`).
	Fixed bool

	mu     sync.Mutex
	orders map[int]Order
	nextID int
	// failing makes /healthz answer 503, to fail a readiness probe.
	failing atomic.Bool
}

// NewServer returns a Server seeded with a few orders.
func NewServer(name string) *Server {
	s := &Server{Name: name, orders: map[int]Order{}, nextID: 100}
	for _, o := range []Order{
		{ID: 1, Item: "espresso beans", Qty: 2},
		{ID: 7, Item: "grinder", Qty: 1},
		{ID: 42, Item: "kettle", Qty: 1, Coupon: "HALFOFF"},
	} {
		s.orders[o.ID] = o
	}
	return s
}

var prices = map[string]float64{"espresso beans": 14.5, "grinder": 89, "kettle": 35}

// Handler returns the service's routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if s.failing.Load() {
			http.Error(w, "failing on purpose (POST /healthz/ok heals it)", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	// Break and heal the health check, to show a failing readiness probe.
	mux.HandleFunc("POST /healthz/fail", func(w http.ResponseWriter, _ *http.Request) {
		s.failing.Store(true)
		io.WriteString(w, "healthz now fails\n")
	})
	mux.HandleFunc("POST /healthz/ok", func(w http.ResponseWriter, _ *http.Request) {
		s.failing.Store(false)
		io.WriteString(w, "healthz ok again\n")
	})
	mux.HandleFunc("GET /whoami", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"name": s.Name})
	})
	// /from says where the caller came from as the app sees it: the
	// agent's loopback address while it sits in front of the app. (Not in
	// /whoami, whose answer a mirror's laptop reproduces exactly.)
	mux.HandleFunc("GET /from", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"name": s.Name, "from": r.RemoteAddr})
	})
	mux.HandleFunc("GET /orders", s.list)
	mux.HandleFunc("POST /orders", s.create)
	mux.HandleFunc("GET /orders/{id}", s.get)
	mux.HandleFunc("POST /orders/{id}/checkout", s.checkout)
	mux.HandleFunc("/echo", echo)
	mux.HandleFunc("GET /bytes", sendBytes)
	mux.HandleFunc("POST /upload", upload)
	return withServedBy(s.Name, mux)
}

func withServedBy(name string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Served-By", name)
		h.ServeHTTP(w, r)
	})
}

func (s *Server) list(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	out := make([]Order, 0, len(s.orders))
	for _, o := range s.orders {
		out = append(out, o)
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	o, ok := s.lookup(w, r)
	if ok {
		writeJSON(w, http.StatusOK, o)
	}
}

func (s *Server) lookup(w http.ResponseWriter, r *http.Request) (Order, bool) {
	id, err := strconv.Atoi(r.PathValue("id"))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "order id must be a number"})
		return Order{}, false
	}
	s.mu.Lock()
	o, ok := s.orders[id]
	s.mu.Unlock()
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no order %d", id)})
	}
	return o, ok
}

func (s *Server) create(w http.ResponseWriter, r *http.Request) {
	var o Order
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&o); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body must be an order in JSON: " + err.Error()})
		return
	}
	if _, ok := prices[o.Item]; !ok || o.Qty <= 0 {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]string{"error": "unknown item or non-positive qty"})
		return
	}
	s.mu.Lock()
	o.ID = s.nextID
	s.nextID++
	s.orders[o.ID] = o
	s.mu.Unlock()
	writeJSON(w, http.StatusCreated, o)
}

// checkout prices an order. The coupon branch has the demo's bug: it looks
// the discount up in a table that has no entry for HALFOFF and divides by it.
func (s *Server) checkout(w http.ResponseWriter, r *http.Request) {
	o, ok := s.lookup(w, r)
	if !ok {
		return
	}
	total := prices[o.Item] * float64(o.Qty)
	if o.Coupon != "" {
		divisors := map[string]float64{"TENOFF": 1.0 / 0.9}
		if s.Fixed {
			divisors["HALFOFF"] = 2 // the fix the replay demo shows
		}
		d := divisors[o.Coupon]
		if d == 0 {
			writeJSON(w, http.StatusInternalServerError, map[string]string{
				"error": fmt.Sprintf("pricing: no discount rule for coupon %q", o.Coupon),
			})
			return
		}
		total /= d
	}
	o.Total = &total
	writeJSON(w, http.StatusOK, o)
}

// echo answers with what it received, for tests that check a request
// arrived unchanged.
func echo(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"method":  r.Method,
		"path":    r.URL.RequestURI(),
		"headers": r.Header,
		"body":    string(body),
	})
}

// sendBytes streams n bytes (?n=, default 1 MiB) for throughput tests.
func sendBytes(w http.ResponseWriter, r *http.Request) {
	n := int64(1 << 20)
	if q := r.URL.Query().Get("n"); q != "" {
		v, err := strconv.ParseInt(q, 10, 64)
		if err != nil || v < 0 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "n must be a non-negative byte count"})
			return
		}
		n = v
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	buf := make([]byte, 64<<10)
	for i := range buf {
		buf[i] = byte(i)
	}
	for n > 0 {
		chunk := min(n, int64(len(buf)))
		if _, err := w.Write(buf[:chunk]); err != nil {
			return
		}
		n -= chunk
	}
}

// upload reads the whole body and answers with its size and SHA-256.
func upload(w http.ResponseWriter, r *http.Request) {
	h := sha256.New()
	n, err := io.Copy(h, r.Body)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"bytes": n, "sha256": hex.EncodeToString(h.Sum(nil))})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// ServeCommand runs the server on addr until ctx ends (SIGTERM), then
// finishes the requests in flight, as a well-behaved app does.
func ServeCommand(ctx context.Context, addr string, stdout io.Writer) error {
	name := os.Getenv("POD_NAME")
	if name == "" {
		name, _ = os.Hostname()
	}
	app := NewServer(name)
	app.Fixed = os.Getenv("DEMO_FIXED") == "1"
	srv := &http.Server{Addr: addr, Handler: app.Handler(), ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(stdout, "orders serving on %s as %s\n", addr, name)
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
