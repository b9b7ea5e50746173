package netns

import (
	"bytes"
	"crypto/rand"
	"io"
	"testing"
	"testing/iotest"
)

func TestCopyAdaptive(t *testing.T) {
	data := make([]byte, 1<<20+123)
	_, _ = rand.Read(data)
	for name, src := range map[string]func() io.Reader{
		"bulk":       func() io.Reader { return bytes.NewReader(data) },
		"one byte":   func() io.Reader { return iotest.OneByteReader(bytes.NewReader(data)) },
		"half reads": func() io.Reader { return iotest.HalfReader(bytes.NewReader(data)) },
	} {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			if err := copyAdaptive(&out, src()); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), data) {
				t.Errorf("copied %d bytes, not the %d sent", out.Len(), len(data))
			}
		})
	}
	t.Run("read error", func(t *testing.T) {
		if err := copyAdaptive(io.Discard, iotest.ErrReader(io.ErrUnexpectedEOF)); err != io.ErrUnexpectedEOF {
			t.Errorf("copyAdaptive: %v, want the read error", err)
		}
	})
}
