// Package batchq decouples a producer from a slower sender: the producer
// puts items into a queue bounded in bytes, and the sender takes whatever
// has accumulated as one batch. Under load the batches grow, so the
// per-message cost of the sender (a gRPC message through a tunnel) is paid
// once per batch, not once per item; when idle, an item goes out alone at
// once. Captured packets travel agent -> daemon -> CLI this way.
package batchq

import (
	"context"
	"sync"
)

// Queue is a FIFO of items bounded by the sum of their sizes.
type Queue[T any] struct {
	mu       sync.Mutex
	cond     *sync.Cond
	items    []T
	sizes    []int
	bytes    int
	budget   int
	closed   bool
	canceled bool
}

// New returns a queue holding at most budget bytes (one item always fits).
func New[T any](budget int) *Queue[T] {
	q := &Queue[T]{budget: budget}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// Put adds an item of size bytes, waiting while the queue is full. It
// returns ctx's error if ctx ends first, or context.Canceled once the
// consumer has gone (Cancel).
func (q *Queue[T]) Put(ctx context.Context, item T, size int) error {
	stop := context.AfterFunc(ctx, func() {
		q.mu.Lock()
		q.cond.Broadcast()
		q.mu.Unlock()
	})
	defer stop()
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.bytes > 0 && q.bytes+size > q.budget && !q.canceled && ctx.Err() == nil {
		q.cond.Wait()
	}
	if q.canceled {
		return context.Canceled
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	q.items, q.sizes = append(q.items, item), append(q.sizes, size)
	q.bytes += size
	q.cond.Broadcast()
	return nil
}

// Close says no more items come; Take returns what is left, then ok false.
func (q *Queue[T]) Close() {
	q.mu.Lock()
	q.closed = true
	q.cond.Broadcast()
	q.mu.Unlock()
}

// Cancel says the consumer is gone: waiting and later Puts fail.
func (q *Queue[T]) Cancel() {
	q.mu.Lock()
	q.canceled = true
	q.cond.Broadcast()
	q.mu.Unlock()
}

// Take waits for at least one item and returns up to max items and up to
// maxBytes (at least one item); ok is false once the queue is closed and
// empty.
func (q *Queue[T]) Take(max, maxBytes int) (batch []T, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) == 0 && !q.closed {
		q.cond.Wait()
	}
	if len(q.items) == 0 {
		return nil, false
	}
	n, bytes := 0, 0
	for n < len(q.items) && n < max && (n == 0 || bytes+q.sizes[n] <= maxBytes) {
		bytes += q.sizes[n]
		n++
	}
	batch = append([]T(nil), q.items[:n]...)
	var zero T
	for i := range n {
		q.items[i] = zero
	}
	q.items, q.sizes = q.items[n:], q.sizes[n:]
	q.bytes -= bytes
	q.cond.Broadcast()
	return batch, true
}

// Drain calls send with each batch until the queue is closed and empty. If
// send fails, the queue is canceled, so the producer's Put fails too, and
// send's error is returned.
func (q *Queue[T]) Drain(max, maxBytes int, send func([]T) error) error {
	for {
		b, ok := q.Take(max, maxBytes)
		if !ok {
			return nil
		}
		if err := send(b); err != nil {
			q.Cancel()
			return err
		}
	}
}
