package httprec

import (
	"encoding/binary"
	"errors"
	"net/http"
	"time"

	"github.com/tetherkube/tether/recording"
)

// The ring keeps each exchange encoded in one byte slice. A slice of bytes
// holds no pointers, so the garbage collector does not scan the ring's
// contents: a full ring of small exchanges as recording.Exchanges (header
// maps, strings, slices) is hundreds of thousands of pointers, and the
// agent's memory limit sits close above the budget, so it collects often,
// each time marking all of them again. Encoded, it is one pointer per
// exchange. Exchanges are decoded only when read (`requests list`, show,
// replay), which is rare beside recording.
//
// The encoding is private to one agent process, never stored or sent:
// varints, length-prefixed strings, and a count or length of 0 for a nil
// header, slice or body (1 + n otherwise), so a decoded exchange is equal
// to the one encoded, field for field.

// stored is an exchange in the ring.
type stored struct {
	id   uint64
	data []byte
}

// storedOverhead is what a stored exchange costs beside its encoding: the
// ring's slot and the allocation's rounding up to its size class.
const storedOverhead = 48

func (s stored) cost() int { return cap(s.data) + storedOverhead }

// encodeExchange appends e's encoding, all but its ID (the ring keeps
// it beside), to dst.
func encodeExchange(dst []byte, e *recording.Exchange) []byte {
	var w encoder
	w.b = dst
	w.int(e.Time.UnixNano())
	w.str(e.Pod)
	w.int(int64(e.Port))
	w.str(e.Source)
	w.str(e.Destination)
	w.str(e.Proto)
	w.message(&e.Request)
	if e.Response == nil {
		w.uint(0)
	} else {
		w.uint(1)
		w.message(e.Response)
	}
	w.int(int64(e.Send))
	w.int(int64(e.Wait))
	w.int(int64(e.Receive))
	w.str(e.Error)
	return w.b
}

type encoder struct{ b []byte }

func (w *encoder) uint(v uint64) { w.b = binary.AppendUvarint(w.b, v) }
func (w *encoder) int(v int64)   { w.b = binary.AppendVarint(w.b, v) }

func (w *encoder) str(s string) {
	w.uint(uint64(len(s)))
	w.b = append(w.b, s...)
}

func (w *encoder) bool(v bool) {
	if v {
		w.uint(1)
	} else {
		w.uint(0)
	}
}

// bytes writes b, telling nil from empty.
func (w *encoder) bytes(b []byte) {
	if b == nil {
		w.uint(0)
		return
	}
	w.uint(1 + uint64(len(b)))
	w.b = append(w.b, b...)
}

// strs writes a list of strings, telling nil from empty.
func (w *encoder) strs(v []string) {
	if v == nil {
		w.uint(0)
		return
	}
	w.uint(1 + uint64(len(v)))
	for _, s := range v {
		w.str(s)
	}
}

func (w *encoder) header(h http.Header) {
	if h == nil {
		w.uint(0)
		return
	}
	w.uint(1 + uint64(len(h)))
	for k, vs := range h {
		w.str(k)
		w.strs(vs)
	}
}

func (w *encoder) message(m *recording.Message) {
	w.str(m.Method)
	w.str(m.Target)
	w.str(m.Host)
	w.int(int64(m.Status))
	w.str(m.Reason)
	w.header(m.Header)
	w.header(m.Trailer)
	w.bytes(m.Body)
	w.int(m.BodySize)
	w.bool(m.Truncated)
	w.strs(m.Redacted)
}

var errCorrupt = errors.New("stored exchange is corrupt")

// decodeExchange returns the exchange s holds.
func decodeExchange(s stored) (*recording.Exchange, error) {
	r := decoder{b: s.data}
	e := &recording.Exchange{ID: s.id}
	e.Time = time.Unix(0, r.int())
	e.Pod = r.str()
	e.Port = int(r.int())
	e.Source = r.str()
	e.Destination = r.str()
	e.Proto = r.str()
	r.message(&e.Request)
	if r.uint() == 1 {
		e.Response = &recording.Message{}
		r.message(e.Response)
	}
	e.Send = time.Duration(r.int())
	e.Wait = time.Duration(r.int())
	e.Receive = time.Duration(r.int())
	e.Error = r.str()
	if r.err != nil || len(r.b) != 0 {
		return nil, errCorrupt
	}
	return e, nil
}

// decoder reads an encoding; after the first error every read returns
// zero values and err stays set.
type decoder struct {
	b   []byte
	err error
}

func (r *decoder) uint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *decoder) int() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *decoder) fail() {
	r.err = errCorrupt
	r.b = nil
}

// take returns the next n bytes.
func (r *decoder) take(n uint64) []byte {
	if n > uint64(len(r.b)) {
		r.fail()
		return nil
	}
	p := r.b[:n:n]
	r.b = r.b[n:]
	return p
}

func (r *decoder) str() string { return string(r.take(r.uint())) }

func (r *decoder) bytes() []byte {
	n := r.uint()
	if n == 0 {
		return nil
	}
	return append([]byte{}, r.take(n-1)...)
}

// count reads a count that tells nil (-1) from empty.
func (r *decoder) count() int {
	n := r.uint()
	if n > uint64(len(r.b))+1 { // every element takes a byte at least
		r.fail()
		return -1
	}
	return int(n) - 1
}

func (r *decoder) strs() []string {
	n := r.count()
	if n < 0 {
		return nil
	}
	v := make([]string, n)
	for i := range v {
		v[i] = r.str()
	}
	return v
}

func (r *decoder) header() http.Header {
	n := r.count()
	if n < 0 {
		return nil
	}
	h := make(http.Header, n)
	for range n {
		k := r.str()
		h[k] = r.strs()
	}
	return h
}

func (r *decoder) message(m *recording.Message) {
	m.Method = r.str()
	m.Target = r.str()
	m.Host = r.str()
	m.Status = int(r.int())
	m.Reason = r.str()
	m.Header = r.header()
	m.Trailer = r.header()
	m.Body = r.bytes()
	m.BodySize = r.int()
	m.Truncated = r.uint() == 1
	m.Redacted = r.strs()
}
