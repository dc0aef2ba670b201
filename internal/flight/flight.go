// Package flight runs one call per key at a time and lets every concurrent
// caller with that key share its result: image pulls and layer downloads,
// snapshot extraction, and pod and container creation by name.
//
// golang.org/x/sync/singleflight does not fit: it runs the call in its
// first caller's goroutine and context, so that caller's cancellation
// cancels everyone's work (or, detached by hand, nothing can cancel it).
// Here the call runs in a context detached from its callers: a caller that
// gives up only stops waiting. What happens when every caller has given up
// is the Group's choice (CancelAbandoned): kubelet cancels a pull that
// another pull shares, which then must go on; and it gives up on a
// RunPodSandbox after its deadline and retries it, and the retry must find
// the first call's result rather than half a sandbox.
package flight

import (
	"context"
	"errors"
	"sync"
)

// ErrAbandoned is the cause of a call's cancellation when every caller
// waiting for it has given up (with CancelAbandoned).
var ErrAbandoned = errors.New("every caller waiting for it gave up")

// Group runs one call per key at a time. The zero value is ready to use.
type Group[T any] struct {
	// CancelAbandoned cancels a call's context once no caller waits for it
	// any more; a later caller of that key then starts a new call, which
	// waits for the cancelled one to return first (both would work on the
	// same files). Without it a call always runs to the end and a later
	// caller joins it: a create must finish, or roll back, on its own.
	CancelAbandoned bool

	mu sync.Mutex // guards calls, draining and every call's waiters
	// calls holds the running call of each key.
	calls map[string]*call[T]
	// draining holds calls cancelled because nobody waits any more, until
	// they return.
	draining map[string]*call[T]
}

type call[T any] struct {
	done    chan struct{} // closed once val and err are set
	val     T
	err     error
	waiters int
	cancel  context.CancelCauseFunc
}

// Do runs fn once for key, or joins the call of key in progress, and waits
// for its result or for ctx to end; joined reports whether the result is
// another caller's call. fn's context keeps ctx's values but not its
// cancellation. A caller whose ctx ends returns context.Cause(ctx).
func (g *Group[T]) Do(ctx context.Context, key string, fn func(context.Context) (T, error)) (val T, joined bool, err error) {
	g.mu.Lock()
	if g.calls == nil {
		g.calls = map[string]*call[T]{}
		g.draining = map[string]*call[T]{}
	}
	c, joined := g.calls[key]
	if !joined {
		c = g.start(ctx, key, fn)
	}
	c.waiters++
	g.mu.Unlock()

	select {
	case <-c.done:
		g.mu.Lock()
		c.waiters--
		g.mu.Unlock()
		return c.val, joined, c.err
	case <-ctx.Done():
		g.mu.Lock()
		c.waiters--
		if c.waiters == 0 && g.CancelAbandoned {
			c.cancel(ErrAbandoned)
			// A caller arriving now must not join a cancelled call: it
			// starts a new one, which waits for this one to wind down.
			if g.calls[key] == c {
				delete(g.calls, key)
				g.draining[key] = c
			}
		}
		g.mu.Unlock()
		var zero T
		return zero, joined, context.Cause(ctx)
	}
}

// start launches fn for key; g.mu is held.
func (g *Group[T]) start(ctx context.Context, key string, fn func(context.Context) (T, error)) *call[T] {
	cctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	c := &call[T]{done: make(chan struct{}), cancel: cancel}
	g.calls[key] = c
	prev := g.draining[key]
	go func() {
		if prev != nil {
			<-prev.done
		}
		if err := context.Cause(cctx); err != nil {
			c.err = err // abandoned while it waited
		} else {
			c.val, c.err = fn(cctx)
		}
		cancel(nil)
		g.mu.Lock()
		if g.calls[key] == c {
			delete(g.calls, key)
		}
		if g.draining[key] == c {
			delete(g.draining, key)
		}
		g.mu.Unlock()
		close(c.done)
	}()
	return c
}

// Waiters is how many callers wait for key's running call (for tests that
// must know every caller has joined before they let the call go on).
func (g *Group[T]) Waiters(key string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c := g.calls[key]; c != nil {
		return c.waiters
	}
	return 0
}
