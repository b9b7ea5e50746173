package httprec

import (
	"encoding/binary"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2/hpack"

	"github.com/tetherkube/tether/recording"
)

// HTTP/2 cleartext with prior knowledge (gRPC's usual h2c): the client's
// stream starts with the connection preface, then both directions are
// frames (RFC 9113 4.1). DATA payloads stream into the bodies; other
// frames are read whole, bounded by MaxHead, and so are header blocks and
// the header lists they decode to.

const h2PrefaceText = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// Frame types and flags used here.
const (
	frameData         = 0x0
	frameHeaders      = 0x1
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	framePushPromise  = 0x5
	frameContinuation = 0x9

	flagEndStream  = 0x1
	flagAck        = 0x1
	flagEndHeaders = 0x4
	flagPadded     = 0x8
	flagPriority   = 0x20

	settingHeaderTableSize = 0x1
)

// HPACK dynamic tables: 4096 bytes until a SETTINGS frame says otherwise,
// and never more than maxTable, whatever a peer allows (a peer's encoder
// that uses more fails to decode and its connection stops recording).
const (
	defaultTable = 4096
	maxTable     = 64 << 10
)

// h2dir is one direction's frame reader.
type h2dir struct {
	server    bool
	head      []byte // frame header being read
	payload   []byte // non-DATA payload being read
	left      int    // payload bytes left of the current frame
	typ       byte
	flags     byte
	stream    uint32
	dataLeft  int // DATA bytes before the padding
	dec       *hpack.Decoder
	table     int    // the decoder's dynamic table bound
	block     []byte // header block across CONTINUATION frames
	inBlock   bool   // a header block awaits its CONTINUATION
	blockFrom uint32 // its stream
	blockEnd  bool   // END_STREAM of the HEADERS that began it
	// fields decoded from the block, listSize their size as RFC 9113
	// 6.5.2 counts it (name, value and 32 each), past maxList: overList.
	fields   []hpack.HeaderField
	listSize int
	maxList  int
	overList bool
}

type h2stream struct {
	p          *pending
	respEnded  bool
	respHeader bool
}

type h2conn struct {
	c       *Conn
	dirs    [2]*h2dir // client, server
	streams map[uint32]*h2stream
}

func newH2Conn(c *Conn) *h2conn {
	h := &h2conn{c: c, streams: map[uint32]*h2stream{}}
	for i := range h.dirs {
		d := &h2dir{server: i == 1, table: defaultTable, maxList: c.opts.MaxHead}
		d.dec = hpack.NewDecoder(defaultTable, d.emit)
		d.dec.SetMaxStringLength(c.opts.MaxHead)
		h.dirs[i] = d
	}
	return h
}

// emit keeps a decoded field while the list stays within its bound; past
// it, the decoder goes on (its table must follow the encoder's) without
// handing out fields.
func (d *h2dir) emit(f hpack.HeaderField) {
	d.listSize += int(f.Size())
	if d.listSize > d.maxList {
		d.overList = true
		d.dec.SetEmitEnabled(false)
		return
	}
	d.fields = append(d.fields, f)
}

// decode decodes a whole header block.
func (d *h2dir) decode(block []byte) ([]hpack.HeaderField, error) {
	d.fields, d.listSize, d.overList = nil, 0, false
	d.dec.SetEmitEnabled(true)
	if _, err := d.dec.Write(block); err != nil {
		return nil, fmt.Errorf("%w: %v", errNotHTTP, err)
	}
	if err := d.dec.Close(); err != nil {
		return nil, fmt.Errorf("%w: %v", errNotHTTP, err)
	}
	if d.overList {
		return nil, fmt.Errorf("%w: a header list over %d bytes", errLimit, d.maxList)
	}
	fields := d.fields
	d.fields = nil
	return fields, nil
}

// buffered is what the frame readers hold: payloads, header blocks and
// the HPACK tables.
func (h *h2conn) buffered() int {
	n := 0
	for _, d := range h.dirs {
		n += cap(d.head) + cap(d.payload) + cap(d.block) + d.table
	}
	return n
}

func (h *h2conn) feed(p []byte, server bool) error {
	d := h.dirs[0]
	if server {
		d = h.dirs[1]
	}
	for len(p) > 0 {
		if d.left == 0 && len(d.head) < 9 {
			n := min(9-len(d.head), len(p))
			d.head = append(d.head, p[:n]...)
			p = p[n:]
			if len(d.head) < 9 {
				return nil
			}
			if err := h.startFrame(d); err != nil {
				return err
			}
			if d.left == 0 {
				if err := h.endFrame(d); err != nil {
					return err
				}
			}
			continue
		}
		n := min(d.left, len(p))
		chunk := p[:n]
		p, d.left = p[n:], d.left-n
		if d.typ == frameData {
			h.dataBytes(d, chunk)
		} else {
			d.payload = append(d.payload, chunk...)
		}
		if d.left == 0 {
			if err := h.endFrame(d); err != nil {
				return err
			}
		}
	}
	return nil
}

// startFrame reads a frame header.
func (h *h2conn) startFrame(d *h2dir) error {
	length := int(d.head[0])<<16 | int(d.head[1])<<8 | int(d.head[2])
	d.typ, d.flags = d.head[3], d.head[4]
	d.stream = binary.BigEndian.Uint32(d.head[5:9]) & 0x7fffffff
	d.left, d.payload = length, d.payload[:0]
	if d.typ != frameData && length > h.c.opts.MaxHead {
		return fmt.Errorf("%w: HTTP/2 frame of %d bytes", errLimit, length)
	}
	if d.inBlock && d.typ != frameContinuation {
		return fmt.Errorf("%w: a header block without its CONTINUATION", errNotHTTP)
	}
	if d.typ == frameData {
		d.dataLeft = -1 // known once the pad length is read
		if d.flags&flagPadded == 0 {
			d.dataLeft = length
		}
	}
	return nil
}

// dataBytes hands DATA payload bytes, less padding, to the stream's body.
func (h *h2conn) dataBytes(d *h2dir, b []byte) {
	if d.dataLeft < 0 {
		pad := int(b[0])
		b = b[1:]
		d.dataLeft = max(d.left+len(b)-pad, 0)
	}
	n := min(d.dataLeft, len(b))
	d.dataLeft -= n
	if st := h.streams[d.stream]; st != nil {
		if d.server {
			st.p.respBody.write(b[:n])
		} else {
			st.p.reqBody.write(b[:n])
		}
	}
}

// endFrame acts on a whole frame (DATA: on its flags only).
func (h *h2conn) endFrame(d *h2dir) error {
	d.head = d.head[:0]
	defer func() {
		if cap(d.payload) > 4<<10 {
			d.payload = nil // a large frame's buffer is not kept for the next
		}
	}()
	switch d.typ {
	case frameData:
		if d.flags&flagEndStream != 0 {
			h.endStream(d.stream, d.server)
		}
	case frameHeaders, frameContinuation:
		frag := d.payload
		if d.typ == frameHeaders {
			if d.flags&flagPadded != 0 {
				if len(frag) < 1 || int(frag[0]) > len(frag)-1 {
					return fmt.Errorf("%w: bad HEADERS padding", errNotHTTP)
				}
				frag = frag[1 : len(frag)-int(frag[0])]
			}
			if d.flags&flagPriority != 0 {
				if len(frag) < 5 {
					return fmt.Errorf("%w: short HEADERS priority", errNotHTTP)
				}
				frag = frag[5:]
			}
			d.block, d.blockFrom, d.blockEnd = append(d.block[:0], frag...), d.stream, d.flags&flagEndStream != 0
		} else {
			if !d.inBlock || d.stream != d.blockFrom {
				return fmt.Errorf("%w: CONTINUATION outside a header block", errNotHTTP)
			}
			d.block = append(d.block, frag...)
		}
		d.inBlock = true
		if len(d.block) > h.c.opts.MaxHead {
			return fmt.Errorf("%w: header block over %d bytes", errLimit, h.c.opts.MaxHead)
		}
		if d.flags&flagEndHeaders != 0 {
			d.inBlock = false
			fields, err := d.decode(d.block)
			if cap(d.block) > 4<<10 {
				d.block = nil
			}
			if err != nil {
				return err
			}
			return h.headers(d, fields)
		}
	case frameSettings:
		if d.flags&flagAck == 0 {
			// A side's header table size bounds what the other side's
			// encoder may use, so it applies to the other direction's decoder.
			for i := 0; i+6 <= len(d.payload); i += 6 {
				if binary.BigEndian.Uint16(d.payload[i:]) == settingHeaderTableSize {
					other := h.dirs[0]
					if !d.server {
						other = h.dirs[1]
					}
					other.table = int(min(binary.BigEndian.Uint32(d.payload[i+2:]), maxTable))
					other.dec.SetAllowedMaxDynamicTableSize(uint32(other.table))
				}
			}
		}
	case frameRSTStream:
		if st := h.streams[d.stream]; st != nil {
			st.p.ex.Error = "the stream was reset"
			delete(h.streams, d.stream)
			h.c.emit(st.p)
		}
	case framePushPromise:
		return fmt.Errorf("%w: server push is not recorded", errUpgraded)
	}
	return nil
}

// headers acts on a decoded header block: a request, a response, or
// trailers. Malformed fields stop the recording.
func (h *h2conn) headers(d *h2dir, fields []hpack.HeaderField) error {
	m := &recording.Message{Header: http.Header{}}
	for _, f := range fields {
		if err := validField(f); err != nil {
			return err
		}
		switch f.Name {
		case ":method":
			m.Method = f.Value
		case ":path":
			m.Target = f.Value
		case ":authority":
			m.Host = f.Value
		case ":status":
			m.Status, _ = strconv.Atoi(f.Value)
		default:
			if !strings.HasPrefix(f.Name, ":") {
				m.Header.Add(f.Name, f.Value)
			}
		}
	}
	c := h.c
	st := h.streams[d.blockFrom]
	switch {
	case !d.server && st == nil:
		p := c.newPending("HTTP/2.0", m)
		if p == nil {
			return fmt.Errorf("%w: %d streams open", errLimit, len(h.streams))
		}
		st = &h2stream{p: p}
		h.streams[d.blockFrom] = st
	case st == nil:
		return nil // a response on a stream not seen (or already reset)
	case !d.server:
		if err := c.chargeTo(st.p, headerCost(m.Header)); err != nil {
			return err
		}
		st.p.ex.Request.Trailer = m.Header
	case !st.respHeader && m.Status/100 == 1:
		// An interim response.
	case !st.respHeader:
		if err := c.chargeTo(st.p, costOf(m)); err != nil {
			return err
		}
		st.respHeader, st.p.respStart = true, c.now()
		st.p.ex.Response = m
	default:
		if err := c.chargeTo(st.p, headerCost(m.Header)); err != nil {
			return err
		}
		st.p.ex.Response.Trailer = m.Header
	}
	if d.blockEnd {
		h.endStream(d.blockFrom, d.server)
	}
	return nil
}

// validField refuses what no HTTP/2 peer may send (RFC 9113 8.2.1, 8.3.1):
// a method that is not a token, a path or authority with control bytes
// or spaces, field names and values with CR, LF, NUL or other controls.
func validField(f hpack.HeaderField) error {
	ok := true
	switch f.Name {
	case ":method":
		ok = validMethod(f.Value)
	case ":path", ":authority", ":scheme", ":protocol":
		ok = validTarget(f.Value)
	case ":status":
		ok = len(f.Value) == 3 && validTarget(f.Value)
	default:
		ok = httpguts.ValidHeaderFieldName(f.Name) && httpguts.ValidHeaderFieldValue(f.Value)
	}
	if !ok {
		return fmt.Errorf("%w: HTTP/2 field %q: %q", errNotHTTP, f.Name, f.Value)
	}
	return nil
}

// endStream marks one side of a stream done; both done is an exchange.
func (h *h2conn) endStream(id uint32, server bool) {
	st := h.streams[id]
	if st == nil {
		return
	}
	if server {
		st.respEnded = true
	} else {
		st.p.reqComplete, st.p.reqDone = true, h.c.now()
	}
	if st.respEnded {
		delete(h.streams, id)
		h.c.emit(st.p)
	}
}

// close records the streams still open as incomplete.
func (h *h2conn) close() {
	for id, st := range h.streams {
		st.p.ex.Error = "the connection closed before the response's end"
		delete(h.streams, id)
		h.c.emit(st.p)
	}
}

// release gives back the streams' charges and drops the frame readers'
// buffers and tables.
func (h *h2conn) release() {
	for id, st := range h.streams {
		st.p.reqBody.release()
		st.p.respBody.release()
		h.c.mem.refund(st.p.charged)
		delete(h.streams, id)
	}
	for i, d := range h.dirs {
		h.dirs[i] = &h2dir{server: d.server}
	}
}
