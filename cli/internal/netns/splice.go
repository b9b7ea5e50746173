package netns

import (
	"io"
	"net"
	"sync"
)

// splice copies both ways until both directions ended, passing a
// half-close on where the connection supports it, then closes both. When
// reading b fails (not a clean end: the agent or the daemon went away),
// abortA, if set, makes a's close a reset, so that CMD sees an error
// rather than a clean end of stream.
func splice(a, b net.Conn, abortA func()) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := copyHalf(b, a); err != nil {
			b.Close()
		}
	}()
	go func() {
		defer wg.Done()
		if err := copyHalf(a, b); err != nil {
			if abortA != nil {
				abortA()
			}
			a.Close()
		}
	}()
	wg.Wait()
	a.Close()
	b.Close()
}

func copyHalf(dst, src net.Conn) error {
	buf := make([]byte, 64<<10)
	_, err := io.CopyBuffer(dst, src, buf)
	if cw, ok := dst.(interface{ CloseWrite() error }); ok && err == nil {
		_ = cw.CloseWrite()
		return nil
	}
	// No half-close: end both directions. (A failed copy: the caller
	// ends them.)
	if err == nil {
		dst.Close()
		src.Close()
	}
	return err
}
