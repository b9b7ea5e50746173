package replay

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tetherkube/tether/recording"
)

// isGRPC reports whether a message is gRPC (not gRPC-Web, whose framing
// differs).
func isGRPC(h http.Header) bool {
	mt, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	return mt == "application/grpc" || strings.HasPrefix(mt, "application/grpc+")
}

// grpcStatusFields end a gRPC call: in trailers, or in the headers of a
// trailers-only response.
var grpcStatusFields = []string{"Grpc-Status", "Grpc-Message", "Grpc-Status-Details-Bin"}

// trailersOnly moves the status fields of a trailers-only response from
// m's headers to its trailers, so both shapes compare alike.
func trailersOnly(m *recording.Message) {
	for _, k := range grpcStatusFields {
		if vs, ok := m.Header[k]; ok {
			if m.Trailer == nil {
				m.Trailer = http.Header{}
			}
			m.Trailer[k] = vs
			delete(m.Header, k)
		}
	}
}

// errFraming: a body is not a sequence of gRPC length-prefixed messages.
var errFraming = errors.New("not gRPC length-prefixed messages")

type grpcMessage struct {
	compressed bool
	data       []byte
}

// grpcMessages splits a gRPC body into its messages.
func grpcMessages(b []byte) ([]grpcMessage, error) {
	var out []grpcMessage
	for len(b) > 0 {
		if len(b) < 5 || b[0] > 1 {
			return nil, errFraming
		}
		n := binary.BigEndian.Uint32(b[1:5])
		if uint64(n) > uint64(len(b)-5) {
			return nil, errFraming
		}
		out = append(out, grpcMessage{compressed: b[0] == 1, data: b[5 : 5+n]})
		b = b[5+n:]
	}
	return out, nil
}

// grpcDiff compares two gRPC bodies message by message; each message is
// decoded generically as protobuf wire format (field numbers, no schema),
// falling back to bytes.
func grpcDiff(a, b []byte) []string {
	ma, errA := grpcMessages(a)
	mb, errB := grpcMessages(b)
	if errA != nil || errB != nil {
		if bytes.Equal(a, b) {
			return nil
		}
		return []string{fmt.Sprintf("body differs: %d bytes recorded, %d replayed", len(a), len(b))}
	}
	var out []string
	if len(ma) != len(mb) {
		out = append(out, fmt.Sprintf("messages: %d recorded, %d replayed", len(ma), len(mb)))
	}
	for i := range min(len(ma), len(mb)) {
		x, y := ma[i], mb[i]
		fx, okX := protoFields(x.data)
		fy, okY := protoFields(y.data)
		if x.compressed || y.compressed || !okX || !okY {
			if x.compressed != y.compressed || !bytes.Equal(x.data, y.data) {
				out = append(out, fmt.Sprintf("message[%d]: %d bytes recorded, %d replayed (not protobuf, or compressed)", i, len(x.data), len(y.data)))
			}
			continue
		}
		keys := map[string]bool{}
		for k := range fx {
			keys[k] = true
		}
		for k := range fy {
			keys[k] = true
		}
		var sorted []string
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			va, vb := strings.Join(fx[k], ", "), strings.Join(fy[k], ", ")
			if va != vb {
				out = append(out, fmt.Sprintf("message[%d] %s: %s -> %s", i, k, orAbsent(va), orAbsent(vb)))
			}
		}
	}
	return out
}

func orAbsent(s string) string {
	if s == "" {
		return "(absent)"
	}
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}

// protoFields decodes a protobuf message without its schema: field paths
// ("2.1" for field 1 of a message in field 2) to their values, in order.
// A length-delimited field is a string when it is printable UTF-8, a
// nested message when it decodes as one, else bytes.
func protoFields(b []byte) (map[string][]string, bool) {
	out := map[string][]string{}
	return out, walkProto(b, "", 0, out)
}

func walkProto(b []byte, prefix string, depth int, out map[string][]string) bool {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		path := prefix + strconv.Itoa(int(num))
		var val string
		switch typ {
		case protowire.VarintType:
			var v uint64
			v, n = protowire.ConsumeVarint(b)
			val = strconv.FormatUint(v, 10)
		case protowire.Fixed32Type:
			var v uint32
			v, n = protowire.ConsumeFixed32(b)
			val = fmt.Sprintf("0x%08x", v)
		case protowire.Fixed64Type:
			var v uint64
			v, n = protowire.ConsumeFixed64(b)
			val = fmt.Sprintf("0x%016x", v)
		case protowire.BytesType:
			var v []byte
			v, n = protowire.ConsumeBytes(b)
			if n < 0 {
				return false
			}
			if utf8.Valid(v) && !bytes.ContainsFunc(v, func(r rune) bool { return r < ' ' && r != '\n' && r != '\t' }) {
				val = strconv.Quote(string(v))
				break
			}
			if depth < 16 {
				sub := map[string][]string{}
				if walkProto(v, path+".", depth+1, sub) {
					for k, vs := range sub {
						out[k] = append(out[k], vs...)
					}
					b = b[n:]
					continue
				}
			}
			val = fmt.Sprintf("bytes %x", v)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n >= 0 {
				val = fmt.Sprintf("wire type %d %x", typ, b[:n])
			}
		}
		if n < 0 {
			return false
		}
		out[path] = append(out[path], val)
		b = b[n:]
	}
	return true
}
