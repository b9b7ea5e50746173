package netns

import (
	"io"
	"net"
	"sync"
)

// splice copies both ways until both directions ended, passing a
// half-close on where the connection supports it, then closes both.
func splice(a, b net.Conn) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); copyHalf(b, a) }()
	go func() { defer wg.Done(); copyHalf(a, b) }()
	wg.Wait()
	a.Close()
	b.Close()
}

func copyHalf(dst, src net.Conn) {
	buf := make([]byte, 64<<10)
	_, err := io.CopyBuffer(dst, src, buf)
	if cw, ok := dst.(interface{ CloseWrite() error }); ok && err == nil {
		_ = cw.CloseWrite()
		return
	}
	// No half-close, or the copy failed: end both directions.
	dst.Close()
	src.Close()
}
