package batchq

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestOrderAndBatching(t *testing.T) {
	q := New[int](1 << 20)
	ctx := context.Background()
	for i := range 10 {
		if err := q.Put(ctx, i, 10); err != nil {
			t.Fatal(err)
		}
	}
	q.Close()
	var got []int
	for {
		b, ok := q.Take(4, 1<<20)
		if !ok {
			break
		}
		if len(b) > 4 {
			t.Fatalf("batch of %d, max 4", len(b))
		}
		got = append(got, b...)
	}
	for i, v := range got {
		if v != i {
			t.Fatalf("got %v, want 0..9 in order", got)
		}
	}
	if len(got) != 10 {
		t.Fatalf("got %d items, want 10", len(got))
	}
}

func TestByteBudgetBlocksProducer(t *testing.T) {
	q := New[int](100)
	ctx := context.Background()
	if err := q.Put(ctx, 1, 60); err != nil {
		t.Fatal(err)
	}
	put := make(chan error, 1)
	go func() { put <- q.Put(ctx, 2, 60) }() // over budget: waits
	select {
	case err := <-put:
		t.Fatalf("Put over the budget returned %v without waiting", err)
	case <-time.After(50 * time.Millisecond):
	}
	if b, _ := q.Take(10, 1000); len(b) != 1 || b[0] != 1 {
		t.Fatalf("Take = %v", b)
	}
	if err := <-put; err != nil {
		t.Fatal(err)
	}
	// maxBytes splits batches, but one item always goes.
	q.Put(ctx, 3, 30)
	if b, _ := q.Take(10, 10); len(b) != 1 || b[0] != 2 {
		t.Fatalf("Take with a small byte cap = %v, want [2]", b)
	}
}

func TestCancelAndContext(t *testing.T) {
	q := New[int](10)
	q.Put(context.Background(), 1, 10)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := q.Put(ctx, 2, 10); !errors.Is(err, context.Canceled) {
			t.Errorf("Put after ctx end = %v", err)
		}
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	wg.Wait()
	q.Cancel()
	if err := q.Put(context.Background(), 3, 1); !errors.Is(err, context.Canceled) {
		t.Errorf("Put after Cancel = %v", err)
	}
}
