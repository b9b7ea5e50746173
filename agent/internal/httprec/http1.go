package httprec

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/tetherkube/tether/recording"
)

// Parser states of one direction of an HTTP/1.x connection.
const (
	stHead       = iota // reading a message head, up to the empty line
	stFixed             // a body of known length
	stChunkSize         // a chunk-size line
	stChunkData         // a chunk's bytes
	stChunkEnd          // the CRLF after a chunk
	stTrailer           // trailer lines after the last chunk
	stUntilClose        // a response body that ends with the connection
)

// errNotHTTP: the bytes are not HTTP/1.x; the connection passes through
// unrecorded.
var errNotHTTP = errors.New("not HTTP/1.x")

// framing is how a message's body is delimited.
type framing int

const (
	noBody framing = iota
	fixedBody
	chunkedBody
	bodyUntilClose
)

// half parses one direction's byte stream into messages, handing each head
// and each finished message to its owner. A head or line that is whole in
// a read is parsed in place; only one that continues in the next read is
// copied, into buf.
type half struct {
	response bool
	state    int
	buf      []byte // the start of a head or line continued in the next read
	nl       int    // head end search: 1 after LF, 2 after LF CR
	left     int64  // bytes left in a fixed body or a chunk
	trailers int    // bytes of the trailer section so far
	body     *bodyBuf
}

// events are what a half reports to its connection. headDone returns how
// the body is framed, or an error to stop parsing.
type events interface {
	headDone(response bool, m *recording.Message, proto string) (framing, int64, error)
	bodyBytes(response bool) *bodyBuf
	trailer(response bool, name, value string) error
	msgDone(response bool)
	// paused reports that the next message's bytes must not be parsed yet.
	paused(response bool) bool
}

// feed consumes p, reporting heads and finished messages to ev.
func (h *half) feed(p []byte, ev events, maxHead int) error {
	for len(p) > 0 {
		switch h.state {
		case stHead:
			if ev.paused(h.response) {
				return nil
			}
			end := h.headEnd(p)
			if end < 0 {
				if len(h.buf)+len(p) > maxHead {
					return fmt.Errorf("%w: head longer than %d bytes", errLimit, maxHead)
				}
				h.buf = append(h.buf, p...)
				return plausibleStart(h.buf, h.response)
			}
			head := p[:end]
			if len(h.buf) > 0 {
				head = append(h.buf, head...)
			}
			if len(head) > maxHead {
				return fmt.Errorf("%w: head longer than %d bytes", errLimit, maxHead)
			}
			p = p[end:]
			m, proto, err := parseHead(head, h.response)
			h.buf = nil
			if err != nil {
				return err
			}
			fr, n, err := ev.headDone(h.response, m, proto)
			if err != nil {
				return err
			}
			h.body = ev.bodyBytes(h.response)
			switch fr {
			case noBody:
				h.finish(ev)
			case fixedBody:
				h.state, h.left = stFixed, n
				h.body.expectLen(n)
				if n == 0 {
					h.finish(ev)
				}
			case chunkedBody:
				h.state, h.trailers = stChunkSize, 0
			case bodyUntilClose:
				h.state = stUntilClose
			}
		case stFixed, stChunkData:
			n := min(int64(len(p)), h.left)
			h.body.write(p[:n])
			h.left -= n
			p = p[n:]
			if h.left == 0 {
				if h.state == stFixed {
					h.finish(ev)
				} else {
					h.state = stChunkEnd
				}
			}
		case stChunkEnd:
			// CRLF (or a bare LF) after the chunk's data.
			if p[0] == '\r' {
				p = p[1:]
				continue
			}
			if p[0] != '\n' {
				return fmt.Errorf("%w: no CRLF after a chunk", errNotHTTP)
			}
			p = p[1:]
			h.state = stChunkSize
		case stChunkSize, stTrailer:
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				if len(h.buf)+len(p) > maxHead {
					return fmt.Errorf("%w: chunk or trailer line longer than %d bytes", errLimit, maxHead)
				}
				h.buf = append(h.buf, p...)
				return nil
			}
			line := p[:i]
			if len(h.buf) > 0 {
				line = append(h.buf, line...)
			}
			p = p[i+1:]
			if err := h.line(bytes.TrimSuffix(line, []byte("\r")), ev, maxHead); err != nil {
				return err
			}
			h.buf = nil
		case stUntilClose:
			h.body.write(p)
			p = nil
		}
	}
	return nil
}

// line acts on a chunk-size line or a trailer line.
func (h *half) line(line []byte, ev events, maxHead int) error {
	if h.state == stTrailer {
		if len(line) == 0 {
			h.finish(ev)
			return nil
		}
		// The trailer section is bounded like a head.
		if h.trailers += len(line) + 2; h.trailers > maxHead {
			return fmt.Errorf("%w: trailers longer than %d bytes", errLimit, maxHead)
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		v = bytes.TrimSpace(v)
		if !ok || !httpguts.ValidHeaderFieldName(string(k)) || !httpguts.ValidHeaderFieldValue(string(v)) {
			return fmt.Errorf("%w: bad trailer line %q", errNotHTTP, line)
		}
		return ev.trailer(h.response, string(k), string(v))
	}
	size, _, _ := bytes.Cut(line, []byte(";"))
	n, err := strconv.ParseInt(string(bytes.TrimSpace(size)), 16, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("%w: bad chunk size %q", errNotHTTP, size)
	}
	if n == 0 {
		h.state = stTrailer
	} else {
		h.state, h.left = stChunkData, n
	}
	return nil
}

// finish completes the current message and readies the next.
func (h *half) finish(ev events) {
	h.state, h.body = stHead, nil
	ev.msgDone(h.response)
}

// headEnd looks in p for the empty line that ends a head, carrying on the
// search from the bytes before p; it returns the index just past it, or -1.
// Each byte is looked at once.
func (h *half) headEnd(p []byte) int {
	for i := 0; i < len(p); i++ {
		if h.nl == 0 {
			j := bytes.IndexByte(p[i:], '\n')
			if j < 0 {
				return -1
			}
			i += j
			h.nl = 1
			continue
		}
		switch {
		case p[i] == '\n':
			h.nl = 0
			return i + 1
		case p[i] == '\r' && h.nl == 1:
			h.nl = 2
		default:
			h.nl = 0
		}
	}
	return -1
}

// plausibleStart rejects, from the first bytes, a stream that cannot be
// HTTP/1.x, so binary traffic is let go at once.
func plausibleStart(b []byte, response bool) error {
	if response {
		const prefix = "HTTP/1."
		n := min(len(b), len(prefix))
		if string(b[:n]) != prefix[:n] {
			return errNotHTTP
		}
		return nil
	}
	for i, c := range b {
		if c == ' ' && i > 0 {
			return nil
		}
		if !httpguts.IsTokenRune(rune(c)) || i > 20 {
			return errNotHTTP
		}
	}
	return nil
}

// validMethod: a method is a token (RFC 9110 9.1), the same grammar as a
// header name: "$", "|", "&" and backquote are token characters, control
// bytes and spaces are not.
func validMethod(s string) bool { return httpguts.ValidHeaderFieldName(s) }

// validTarget: a request target has no control bytes, spaces or DEL.
func validTarget(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] == 0x7f {
			return false
		}
	}
	return s != ""
}

// parseHead reads a request or status line and the header fields.
func parseHead(b []byte, response bool) (*recording.Message, string, error) {
	lines := strings.Split(strings.TrimRight(string(b), "\r\n"), "\n")
	first := strings.TrimSuffix(lines[0], "\r")
	m := &recording.Message{Header: http.Header{}}
	var proto string
	if response {
		var code string
		var ok bool
		proto, code, ok = strings.Cut(first, " ")
		if !ok || (proto != "HTTP/1.1" && proto != "HTTP/1.0") {
			return nil, "", fmt.Errorf("%w: status line %q", errNotHTTP, first)
		}
		code, m.Reason, _ = strings.Cut(code, " ")
		n, err := strconv.Atoi(code)
		if err != nil || len(code) != 3 || n < 100 || !httpguts.ValidHeaderFieldValue(m.Reason) {
			return nil, "", fmt.Errorf("%w: status line %q", errNotHTTP, first)
		}
		m.Status = n
	} else {
		parts := strings.Split(first, " ")
		if len(parts) != 3 || parts[0] == "" || parts[1] == "" || (parts[2] != "HTTP/1.1" && parts[2] != "HTTP/1.0") {
			return nil, "", fmt.Errorf("%w: request line %q", errNotHTTP, first)
		}
		if !validMethod(parts[0]) || !validTarget(parts[1]) {
			return nil, "", fmt.Errorf("%w: request line %q", errNotHTTP, first)
		}
		m.Method, m.Target, proto = parts[0], parts[1], parts[2]
	}
	for _, l := range lines[1:] {
		l = strings.TrimSuffix(l, "\r")
		k, v, ok := strings.Cut(l, ":")
		v = strings.TrimSpace(v)
		if !ok || !httpguts.ValidHeaderFieldName(k) || !httpguts.ValidHeaderFieldValue(v) {
			return nil, "", fmt.Errorf("%w: header line %q", errNotHTTP, l)
		}
		m.Header.Add(k, v)
	}
	if !response {
		m.Host = m.Header.Get("Host")
	}
	return m, proto, nil
}

// bodyFraming decides how a message's body is delimited (RFC 9112 6.3).
// method and status are the request's method and the response's status.
func bodyFraming(m *recording.Message, response bool, method string) (framing, int64, error) {
	if response && (method == http.MethodHead || m.Status/100 == 1 || m.Status == 204 || m.Status == 304) {
		return noBody, 0, nil
	}
	if te := m.Header.Values("Transfer-Encoding"); len(te) > 0 {
		codings := strings.Split(strings.Join(te, ","), ",")
		if strings.EqualFold(strings.TrimSpace(codings[len(codings)-1]), "chunked") {
			return chunkedBody, 0, nil
		}
		if response {
			return bodyUntilClose, 0, nil
		}
		return 0, 0, fmt.Errorf("%w: request with transfer-encoding %q but not chunked", errNotHTTP, te)
	}
	if cl := m.Header.Values("Content-Length"); len(cl) > 0 {
		n, err := strconv.ParseInt(strings.TrimSpace(cl[0]), 10, 64)
		for _, v := range cl[1:] {
			if strings.TrimSpace(v) != strings.TrimSpace(cl[0]) {
				err = errors.New("differing values")
			}
		}
		if err != nil || n < 0 {
			return 0, 0, fmt.Errorf("%w: content-length %q", errNotHTTP, cl)
		}
		return fixedBody, n, nil
	}
	if response {
		return bodyUntilClose, 0, nil
	}
	return noBody, 0, nil
}
