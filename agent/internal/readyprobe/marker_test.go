package readyprobe

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func nonce(b byte) Nonce {
	var n Nonce
	for i := range n {
		n[i] = b + byte(i)
	}
	return n
}

// TestMagicIsNoClientPreface: the marker starts like no client-first
// protocol the router or a server could take it for.
func TestMagicIsNoClientPreface(t *testing.T) {
	if len(Magic) != 16 || len(AnswerMagic) != 16 || len(Marker(nonce(1))) != MarkerSize {
		t.Fatalf("sizes: magic %d, answer %d, marker %d", len(Magic), len(AnswerMagic), len(Marker(nonce(1))))
	}
	for _, preface := range []string{"GET ", "POST ", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "\x16\x03\x01", "*1\r\n", "\x00\x00\x00\x08\x04\xd2\x16\x2f"} {
		n := min(len(preface), len(Magic))
		if Magic[:n] == preface[:n] {
			t.Errorf("magic starts as %q", preface)
		}
	}
}

func TestReadAnswer(t *testing.T) {
	n := nonce(7)
	ans := Answer(n, "orders-7d9f")
	for _, tc := range []struct {
		name    string
		in      io.Reader
		want    string
		wantErr error
	}{
		{"answer", bytes.NewReader(ans), "orders-7d9f", nil},
		{"byte by byte", iotest.OneByteReader(bytes.NewReader(ans)), "orders-7d9f", nil},
		{"after a greeting", io.MultiReader(strings.NewReader("220 mail.example ESMTP\r\n"), bytes.NewReader(ans)), "orders-7d9f", nil},
		{"another nonce", bytes.NewReader(Answer(nonce(8), "x")), "", ErrNoAnswer},
		{"an app's answer", strings.NewReader("HTTP/1.1 400 Bad Request\r\n\r\n"), "", ErrNoAnswer},
		{"cut short", bytes.NewReader(ans[:len(ans)-2]), "", ErrNoAnswer},
		{"nothing", strings.NewReader(""), "", ErrNoAnswer},
		{"endless greeting", io.LimitReader(iotest.OneByteReader(strings.NewReader(strings.Repeat("x", 10000))), 10000), "", ErrNoAnswer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadAnswer(tc.in, n)
			if got != tc.want || !errors.Is(err, tc.wantErr) {
				t.Errorf("ReadAnswer = %q, %v; want %q, %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
	if got, err := ReadAnswer(bytes.NewReader(Answer(n, strings.Repeat("p", 300))), n); err != nil || len(got) != 255 {
		t.Errorf("long pod name: %d bytes, %v; want 255 bytes", len(got), err)
	}
}

func TestNonces(t *testing.T) {
	now := time.Unix(1000, 0)
	s := NewNonces(func() time.Time { return now })
	a, b := nonce(1), nonce(2)
	if s.Active() {
		t.Fatal("active with no nonce")
	}
	if _, ok := s.Match(Marker(a)); ok {
		t.Error("matched a nonce never expected")
	}
	s.Expect(a, time.Second)
	if !s.Active() {
		t.Fatal("not active with a nonce")
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want bool
	}{
		{"marker", Marker(a), true},
		{"marker and more", append(Marker(a), "GET / HTTP/1.1\r\n"...), true},
		{"other nonce", Marker(b), false},
		{"cut short", Marker(a)[:MarkerSize-1], false},
		{"magic only", []byte(Magic), false},
		{"http", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), false},
		{"nothing", nil, false},
	} {
		if n, ok := s.Match(tc.in); ok != tc.want || (ok && n != a) {
			t.Errorf("%s: Match = %x, %v; want %v", tc.name, n, ok, tc.want)
		}
	}
	now = now.Add(time.Second)
	if _, ok := s.Match(Marker(a)); ok {
		t.Error("matched an expired nonce")
	}
	if s.Active() {
		t.Error("still active after the only nonce expired and was seen")
	}
	s.Expect(a, time.Minute)
	s.Expect(b, time.Minute)
	s.Forget(a)
	if _, ok := s.Match(Marker(a)); ok {
		t.Error("matched a forgotten nonce")
	}
	if _, ok := s.Match(Marker(b)); !ok {
		t.Error("forgetting one nonce forgot another")
	}
}
