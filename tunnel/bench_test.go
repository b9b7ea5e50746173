package tunnel

import (
	"context"
	"io"
	"testing"
)

// BenchmarkStreams measures stream open + header + close round trips per
// second over TCP loopback.
func BenchmarkStreams(b *testing.B) {
	client, server := sessions(b, transports()[1], DefaultConfig(testToken), DefaultConfig(testToken))
	ctx := context.Background()
	go func() {
		for {
			st, err := server.Accept(ctx)
			if err != nil {
				return
			}
			go func() {
				io.Copy(io.Discard, st)
				st.Close()
			}()
		}
	}()
	b.ReportAllocs()
	for b.Loop() {
		st, err := client.Open(ctx, RoleConn, []byte("bench"))
		if err != nil {
			b.Fatal(err)
		}
		st.CloseWrite()
		io.Copy(io.Discard, st)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "streams/s")
}

// BenchmarkThroughput measures bulk bytes through one stream over TCP
// loopback (MB/s from SetBytes).
func BenchmarkThroughput(b *testing.B) {
	client, server := sessions(b, transports()[1], DefaultConfig(testToken), DefaultConfig(testToken))
	ctx := context.Background()
	done := make(chan int64, 1)
	go func() {
		st, err := server.Accept(ctx)
		if err != nil {
			done <- 0
			return
		}
		n, _ := io.Copy(io.Discard, st)
		st.Close()
		done <- n
	}()
	st, err := client.Open(ctx, RoleConn, nil)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 256<<10)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if _, err := st.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	st.CloseWrite()
	if n := <-done; n != int64(b.N)*int64(len(buf)) {
		b.Fatalf("server read %d bytes, want %d", n, int64(b.N)*int64(len(buf)))
	}
}
