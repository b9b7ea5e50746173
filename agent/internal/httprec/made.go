package httprec

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/tetherkube/tether/recording"
)

// Made records the exchanges of a connection the agent speaks HTTP/1.1
// over itself (a mirror's pipelined copies to its laptop) from the
// requests it wrote and the answers net/http read for it: their bytes are
// not parsed a second time, as they would be through Tap. It keeps what a
// Conn watching the same bytes keeps: the heads as they crossed the wire,
// bodies within the cap, redaction, and the same charges to the
// connection's share and the ring's budget.
//
// The heads are rebuilt as net/http wrote and read them: a request as
// Request.Write sends one of known length (Host, User-Agent,
// Content-Length, Trailer); an answer with the framing headers
// ReadResponse takes out of Response.Header put back (Transfer-Encoding,
// Trailer, Connection: close). What ReadResponse drops cannot come back:
// a Connection header that named more than close is recorded as
// "Connection: close", and none on an answer whose body ends with the
// connection.
//
// A Made is used by one goroutine at a time (the answers' reader).
type Made struct {
	meta    Meta
	opts    Options
	ring    *Ring
	mem     meter
	answer  *bodyBuf // the body of the answer being read
	counted bool
}

// NewMade starts recording a connection the agent speaks HTTP/1.1 over.
func (r *Ring) NewMade(meta Meta, opts Options) *Made {
	return &Made{meta: meta, opts: opts, ring: r, mem: meter{ring: r, share: r.shareOf(opts)}}
}

// AnswerBody returns where to copy the body of the next answer, resp: it
// takes every byte and keeps what the recording keeps.
func (m *Made) AnswerBody(resp *http.Response) io.Writer {
	m.answer.release() // an answer Record was not given
	m.answer = newBody(&m.mem, m.opts.BodyCap)
	m.answer.expectLen(resp.ContentLength)
	return (*madeBody)(m.answer)
}

type madeBody bodyBuf

func (b *madeBody) Write(p []byte) (int, error) {
	(*bodyBuf)(b).write(p)
	return len(p), nil
}

// Record stores the exchange of req, handed to the connection at sent
// with body (the whole body it wrote), and resp, whose head was read at
// head and whose body went through AnswerBody by end. resp is nil when no
// answer came; err, when not nil, says why the exchange is incomplete.
// The exchange takes req's and resp's headers, changed.
func (m *Made) Record(req *http.Request, body []byte, sent, head, end time.Time, resp *http.Response, err error) {
	answer := m.answer
	m.answer = nil
	request := requestHead(req)
	cost := pendingCost + len(m.meta.Source) + len(m.meta.Pod) + costOf(request)
	kept := body[:min(len(body), m.opts.BodyCap)]
	cost += len(kept)
	var response *recording.Message
	if resp != nil {
		response = answerHead(resp)
		cost += costOf(response)
	}
	if !m.mem.charge(cost) {
		answer.release()
		m.ring.stats.limited.Add(1)
		return
	}
	if !m.counted {
		m.counted = true
		m.ring.stats.conns.Add(1)
	}
	request.Body, request.BodySize, request.Truncated = kept, int64(len(body)), len(kept) < len(body)
	ex := &recording.Exchange{Time: sent, Pod: m.meta.Pod, Port: m.meta.Port, Source: m.meta.Source,
		Destination: m.meta.Destination, Proto: "HTTP/1.1", Request: *request}
	held := cost
	switch {
	case response != nil:
		answer.finish(response)
		held += answer.held()
		ex.Response = response
		ex.Wait, ex.Receive = head.Sub(sent), end.Sub(head)
		if err != nil {
			ex.Error = fmt.Sprintf("the connection closed before the response's end (%v)", err)
		}
	default:
		answer.release()
		ex.Send = end.Sub(sent)
		if err != nil {
			ex.Error = fmt.Sprintf("the connection closed before the response (%v)", err)
		}
	}
	m.opts.Redactor.Apply(ex)
	m.mem.settle(held)
	m.ring.add(ex, held)
}

// requestHead is req's head as Request.Write sends it, for a request of
// known length (ContentLength set, no Transfer-Encoding, Close false).
// It takes req's header, changed to what went on the wire: the request
// is done with.
func requestHead(req *http.Request) *recording.Message {
	host := req.Host
	if host == "" && req.URL != nil {
		host = req.URL.Host
	}
	if h, err := httpguts.PunycodeHostPort(host); err == nil {
		host = h
	}
	h := req.Header
	if h == nil {
		h = http.Header{}
	}
	ua := "Go-http-client/1.1"
	if vs, ok := h["User-Agent"]; ok {
		ua = ""
		if len(vs) > 0 {
			ua = vs[0]
		}
	}
	// Written apart from the header map, below.
	delete(h, "User-Agent")
	delete(h, "Content-Length")
	delete(h, "Transfer-Encoding")
	delete(h, "Trailer")
	h["Host"] = []string{host}
	if ua != "" {
		h["User-Agent"] = []string{ua}
	}
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	if req.ContentLength > 0 || req.ContentLength == 0 && (method == "POST" || method == "PUT" || method == "PATCH") {
		h["Content-Length"] = []string{strconv.FormatInt(req.ContentLength, 10)}
	}
	if len(req.Trailer) > 0 {
		keys := make([]string, 0, len(req.Trailer))
		for k := range req.Trailer {
			keys = append(keys, http.CanonicalHeaderKey(k))
		}
		slices.Sort(keys)
		h["Trailer"] = []string{strings.Join(keys, ",")}
	}
	return &recording.Message{Method: method, Target: req.URL.RequestURI(), Host: host, Header: h}
}

// answerHead is resp's head as it came, once its body was read: the
// framing headers ReadResponse took out of resp.Header put back, and the
// trailers that came. resp.Header becomes the message's.
func answerHead(resp *http.Response) *recording.Message {
	h := resp.Header
	if h == nil {
		h = http.Header{}
	}
	chunked := len(resp.TransferEncoding) > 0
	if chunked {
		h["Transfer-Encoding"] = resp.TransferEncoding
	}
	if len(resp.Trailer) > 0 && chunked {
		keys := make([]string, 0, len(resp.Trailer))
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		h["Trailer"] = []string{strings.Join(keys, ", ")}
	}
	// ReadResponse takes "Connection: close" out of an HTTP/1.1 answer and
	// says Close; it says Close too, with no such header, for a body that
	// ends with the connection.
	untilClose := resp.ContentLength < 0 && !chunked && bodyAllowed(resp)
	if resp.Close && resp.ProtoAtLeast(1, 1) && !untilClose && h["Connection"] == nil {
		h["Connection"] = []string{"close"}
	}
	m := &recording.Message{Status: resp.StatusCode, Header: h}
	reason := strings.TrimPrefix(resp.Status, strconv.Itoa(resp.StatusCode))
	m.Reason = strings.TrimPrefix(reason, " ")
	for k, vs := range resp.Trailer {
		if len(vs) == 0 {
			continue // announced, never sent
		}
		if m.Trailer == nil {
			m.Trailer = http.Header{}
		}
		m.Trailer[k] = vs
	}
	return m
}

// bodyAllowed: an answer to resp.Request may have a body (not HEAD, not
// 1xx, 204 or 304).
func bodyAllowed(resp *http.Response) bool {
	if resp.Request != nil && resp.Request.Method == http.MethodHead {
		return false
	}
	s := resp.StatusCode
	return s >= 200 && s != 204 && s != 304
}
