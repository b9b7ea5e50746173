package tunnel

import (
	"errors"
	"io"
	"net"
	"runtime"
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
	n, err := copyConn(dst, src)
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

// copyConn copies src to dst: between two TCP connections with the
// kernel's splice (Linux: *net.TCPConn.ReadFrom; the bytes never enter
// this process), else with joinCopier, reading and writing a TCP side
// with raw system calls (RawIO). A wrapper around either side (a
// recording tap, a readiness check) takes the copier.
func copyConn(dst, src net.Conn) (int64, error) {
	if d, ok := dst.(*net.TCPConn); ok && runtime.GOOS == "linux" {
		// Elsewhere ReadFrom is io.Copy's 32 KiB buffer per direction,
		// where the copier holds 2 KiB while a connection idles.
		if s, ok := src.(*net.TCPConn); ok {
			return d.ReadFrom(s)
		}
	}
	return joinCopier.Copy(RawIO(dst), RawIO(src))
}

// joinCopier moves up to 256 KiB per Write during bulk: one yamux frame,
// one message through the port-forward, where io.Copy's 32 KiB made eight.
// The dead-peer check counts any byte from the peer as life and bounds a
// frame's write by WriteTimeout (10 s), so a frame this size needs a link
// of about 210 kbit/s (see Config.WriteTimeout).
var joinCopier = NewCopier(256 << 10)

// quiet drops the errors that only say a connection was closed.
func quiet(err error) error {
	if err == nil || errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, ErrClosed) {
		return nil
	}
	return err
}
