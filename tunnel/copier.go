package tunnel

import (
	"io"
	"sync"
)

// smallBuf is what a connection waiting in Read holds: 2 KiB, not
// io.Copy's 32, so 1,000 idle connections hold 4 MB of buffers both ways.
const smallBuf = 2 << 10

// Copier is io.Copy with buffers sized to the traffic: a copy waits in
// Read with a small buffer; a read that fills it is followed by reads into
// a large pooled one, given back at the first read the small one would
// have held. Bulk thus moves large writes while idle connections stay
// small. Join and tether run's namespace each use one with 256 KiB.
type Copier struct {
	pool sync.Pool
}

// NewCopier returns a Copier whose large buffers hold large bytes.
func NewCopier(large int) *Copier {
	return &Copier{pool: sync.Pool{New: func() any { b := make([]byte, large); return &b }}}
}

// Copy copies src to dst until src's EOF (nil) or an error, as io.Copy.
func (c *Copier) Copy(dst io.Writer, src io.Reader) (int64, error) {
	small := make([]byte, smallBuf)
	var large *[]byte
	defer func() {
		if large != nil {
			c.pool.Put(large)
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
			large = c.pool.Get().(*[]byte)
			buf = *large
		case n <= smallBuf && large != nil:
			// Back to small only when the read would have fitted it: a
			// bulk stream's reads are mostly short of the large buffer
			// (the reader outpaces the writer), and dropping at each made
			// every other read and write a small one.
			c.pool.Put(large)
			large, buf = nil, small
		}
	}
}
