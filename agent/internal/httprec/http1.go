package httprec

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

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
// and each finished message to its owner.
type half struct {
	response bool
	state    int
	buf      []byte // head or line being accumulated
	left     int64  // bytes left in a fixed body or a chunk
	msg      *recording.Message
	body     *bodyBuf
}

// events are what a half reports to its connection. headDone returns how
// the body is framed, or an error to stop parsing.
type events interface {
	headDone(response bool, m *recording.Message, proto string) (framing, int64, error)
	bodyBytes(response bool) *bodyBuf
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
			h.buf = append(h.buf, p...)
			end := headEnd(h.buf)
			if end < 0 {
				if len(h.buf) > maxHead {
					return fmt.Errorf("%w: head longer than %d bytes", errNotHTTP, maxHead)
				}
				if err := plausibleStart(h.buf, h.response); err != nil {
					return err
				}
				return nil
			}
			rest := h.buf[end:]
			m, proto, err := parseHead(h.buf[:end], h.response)
			if err != nil {
				return err
			}
			h.msg = m
			fr, n, err := ev.headDone(h.response, m, proto)
			if err != nil {
				return err
			}
			p = append([]byte(nil), rest...)
			h.buf = h.buf[:0]
			h.body = ev.bodyBytes(h.response)
			switch fr {
			case noBody:
				h.finish(ev)
			case fixedBody:
				h.state, h.left = stFixed, n
				if n == 0 {
					h.finish(ev)
				}
			case chunkedBody:
				h.state = stChunkSize
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
				h.buf = append(h.buf, p...)
				if len(h.buf) > maxHead {
					return fmt.Errorf("%w: chunk line longer than %d bytes", errNotHTTP, maxHead)
				}
				return nil
			}
			line := strings.TrimRight(string(append(h.buf, p[:i]...)), "\r")
			h.buf, p = h.buf[:0], p[i+1:]
			if h.state == stTrailer {
				if line == "" {
					h.finish(ev)
					continue
				}
				k, v, ok := strings.Cut(line, ":")
				if !ok {
					return fmt.Errorf("%w: bad trailer line", errNotHTTP)
				}
				if h.msg.Trailer == nil {
					h.msg.Trailer = http.Header{}
				}
				h.msg.Trailer.Add(strings.TrimSpace(k), strings.TrimSpace(v))
				continue
			}
			size, _, _ := strings.Cut(line, ";")
			n, err := strconv.ParseInt(strings.TrimSpace(size), 16, 64)
			if err != nil || n < 0 {
				return fmt.Errorf("%w: bad chunk size %q", errNotHTTP, size)
			}
			if n == 0 {
				h.state = stTrailer
			} else {
				h.state, h.left = stChunkData, n
			}
		case stUntilClose:
			h.body.write(p)
			p = nil
		}
	}
	return nil
}

// finish completes the current message and readies the next.
func (h *half) finish(ev events) {
	h.state, h.msg, h.body = stHead, nil, nil
	ev.msgDone(h.response)
}

// headEnd returns the index just past the empty line ending a head, or -1.
func headEnd(b []byte) int {
	for i := 0; i < len(b); i++ {
		if b[i] != '\n' {
			continue
		}
		if i+1 < len(b) && b[i+1] == '\n' {
			return i + 2
		}
		if i+2 < len(b) && b[i+1] == '\r' && b[i+2] == '\n' {
			return i + 3
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
		if !isTokenChar(c) || i > 20 {
			return errNotHTTP
		}
	}
	return nil
}

func isTokenChar(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
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
		if err != nil || len(code) != 3 || n < 100 {
			return nil, "", fmt.Errorf("%w: status %q", errNotHTTP, code)
		}
		m.Status = n
	} else {
		parts := strings.Split(first, " ")
		if len(parts) != 3 || parts[0] == "" || parts[1] == "" || (parts[2] != "HTTP/1.1" && parts[2] != "HTTP/1.0") {
			return nil, "", fmt.Errorf("%w: request line %q", errNotHTTP, first)
		}
		for i := 0; i < len(parts[0]); i++ {
			if !isTokenChar(parts[0][i]) {
				return nil, "", fmt.Errorf("%w: method %q", errNotHTTP, parts[0])
			}
		}
		m.Method, m.Target, proto = parts[0], parts[1], parts[2]
	}
	for _, l := range lines[1:] {
		l = strings.TrimSuffix(l, "\r")
		k, v, ok := strings.Cut(l, ":")
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return nil, "", fmt.Errorf("%w: header line %q", errNotHTTP, l)
		}
		m.Header.Add(k, strings.TrimSpace(v))
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
