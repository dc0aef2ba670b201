package client

import (
	"context"
	"sync"
	"time"
)

// The pauses between attempts while the supervisor cannot be reached:
// doubling from firstRetry to maxRetry. The cap bounds how long a call
// waits after the supervisor is back (berthd restarts it in ~100 ms).
const (
	firstRetry = 20 * time.Millisecond
	maxRetry   = time.Second
)

// backoff is shared by every call of a Client. berthd keeps a Wait open
// per running container and pause; with the supervisor down, each of them
// redialling on its own clock would be thousands of dials a second. While
// the supervisor is away one caller at a time probes it, at exponentially
// spaced times; the others sleep until a probe reaches it.
type backoff struct {
	mu       sync.Mutex
	down     bool          // the last attempt failed; guarded by mu
	failures int           // failed attempts since the last answer; guarded by mu
	next     time.Time     // when the next probe may dial; guarded by mu
	up       chan struct{} // closed when a probe connects; guarded by mu
}

func (b *backoff) delay() time.Duration {
	d := firstRetry
	for i := 1; i < b.failures && d < maxRetry; i++ {
		d *= 2
	}
	return min(d, maxRetry)
}

// wait returns when the caller may dial: at once while the supervisor is
// up, else when it is this caller's turn to probe or a probe connected.
func (b *backoff) wait(ctx context.Context) error {
	for {
		b.mu.Lock()
		if !b.down {
			b.mu.Unlock()
			return nil
		}
		now := time.Now()
		if !now.Before(b.next) {
			b.next = now.Add(b.delay()) // this caller probes; others wait their turn
			b.mu.Unlock()
			return nil
		}
		d, up := b.next.Sub(now), b.up
		b.mu.Unlock()
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-up:
			t.Stop()
		case <-t.C:
		}
	}
}

// failed records a failed attempt (no connection, or one dropped before
// the answer).
func (b *backoff) failed() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures++
	if !b.down {
		b.down = true
		b.up = make(chan struct{})
	}
	b.next = time.Now().Add(b.delay())
}

// connected records a connection made: the waiting callers go ahead. The
// failure count stays until an answer (answered), so a supervisor that
// accepts and hangs up at once is still retried ever more slowly.
func (b *backoff) connected() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.down {
		b.down = false
		close(b.up)
	}
}

// answered records a complete answer.
func (b *backoff) answered() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures = 0
}
