package tunnel

import (
	"errors"
	"io"
	"net"
	"sync"
)

// closeWriter is a connection that can half-close: *net.TCPConn,
// *net.UnixConn, *Stream.
type closeWriter interface {
	CloseWrite() error
}

// Join copies bytes both ways between a and b until both directions end,
// passing each half-close on (the peer of the side that finished writing
// reads EOF), then closes both. It returns the bytes copied each way and
// the first error other than a normal end of stream.
func Join(a, b net.Conn) (aToB, bToA int64, err error) {
	var wg sync.WaitGroup
	var errAB, errBA error
	wg.Add(2)
	go func() {
		defer wg.Done()
		aToB, errAB = copyHalf(b, a)
	}()
	go func() {
		defer wg.Done()
		bToA, errBA = copyHalf(a, b)
	}()
	wg.Wait()
	a.Close()
	b.Close()
	return aToB, bToA, errors.Join(quiet(errAB), quiet(errBA))
}

// copyHalf copies src to dst, then half-closes dst (or closes it when it
// cannot half-close, and src too, to unblock the other direction).
func copyHalf(dst, src net.Conn) (int64, error) {
	n, err := copyAdaptive(dst, src)
	if cw, ok := dst.(closeWriter); ok {
		cw.CloseWrite()
	} else {
		dst.Close()
	}
	if err != nil {
		// A broken direction breaks the connection: stop the other one.
		src.Close()
		dst.Close()
	}
	return n, err
}

// Buffers: a connection waits in Read with a small buffer (an idle one
// holds 2 KiB per direction, not io.Copy's 32); a read that fills it is
// followed by reads into a large pooled one, given back at the first read
// the small one would have held. A bulk stream thus moves 64 KiB per
// Write: one yamux frame, one message through the port-forward, where
// io.Copy made two. Not more: yamux bounds one frame's write by
// ConnectionWriteTimeout (Config.DeadPeerTimeout, 1 s), so a frame must
// drain in a second on the slowest link tether should survive (64 KiB:
// about 512 kbit/s; 256 KiB would need 2 Mbit/s).
const (
	smallBuf = 2 << 10
	largeBuf = 64 << 10
)

var largeBufs = sync.Pool{New: func() any { b := make([]byte, largeBuf); return &b }}

// copyAdaptive is io.Copy with the buffers above.
func copyAdaptive(dst io.Writer, src io.Reader) (int64, error) {
	small := make([]byte, smallBuf)
	var large *[]byte
	defer func() {
		if large != nil {
			largeBufs.Put(large)
		}
	}()
	buf := small
	var written int64
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			w, err := dst.Write(buf[:n])
			written += int64(w)
			if err == nil && w < n {
				err = io.ErrShortWrite
			}
			if err != nil {
				return written, err
			}
		}
		if rerr == io.EOF {
			return written, nil
		}
		if rerr != nil {
			return written, rerr
		}
		switch {
		case n == len(buf) && large == nil:
			large = largeBufs.Get().(*[]byte)
			buf = *large
		case n <= smallBuf && large != nil:
			largeBufs.Put(large)
			large, buf = nil, small
		}
	}
}

// quiet drops the errors that only say a connection was closed.
func quiet(err error) error {
	if err == nil || errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, ErrClosed) {
		return nil
	}
	return err
}
