package image

import (
	"context"
	"errors"
	"sync"
)

// errAbandoned is the cause of a shared operation's cancellation when every
// caller waiting for it has given up.
var errAbandoned = errors.New("every caller waiting for it gave up")

// flights runs one operation per key at a time and lets every concurrent
// caller with that key wait for its result. Unlike x/sync/singleflight, the
// operation runs in a context detached from its first caller: a caller that
// is cancelled only stops waiting, and the operation is cancelled only when
// no caller is left (kubelet cancels a pull that another pull shares).
type flights[T any] struct {
	mu sync.Mutex // guards m, draining and every flight's waiters
	m  map[string]*flight[T]
	// draining holds runs cancelled because nobody waits any more, until
	// they return; a new run of the same key waits for them.
	draining map[string]*flight[T]
}

type flight[T any] struct {
	done    chan struct{} // closed when val and err are set
	val     T
	err     error
	waiters int
	cancel  context.CancelCauseFunc
}

// Do runs fn once for key, or joins the run in progress, and waits for its
// result or for ctx to end. fn's context keeps ctx's values but not its
// cancellation.
func (g *flights[T]) Do(ctx context.Context, key string, fn func(context.Context) (T, error)) (T, error) {
	g.mu.Lock()
	if g.m == nil {
		g.m = map[string]*flight[T]{}
		g.draining = map[string]*flight[T]{}
	}
	f, ok := g.m[key]
	if !ok {
		f = g.start(ctx, key, fn)
	}
	f.waiters++
	g.mu.Unlock()

	select {
	case <-f.done:
		g.mu.Lock()
		f.waiters--
		g.mu.Unlock()
		return f.val, f.err
	case <-ctx.Done():
		g.mu.Lock()
		f.waiters--
		if f.waiters == 0 {
			f.cancel(errAbandoned)
			// A caller arriving now must not join a cancelled run: it starts
			// a new one, which waits for this one to wind down first.
			if g.m[key] == f {
				delete(g.m, key)
				g.draining[key] = f
			}
		}
		g.mu.Unlock()
		var zero T
		return zero, context.Cause(ctx)
	}
}

// start launches fn for key; g.mu is held. A cancelled run of the same key
// still winding down must end first: both would work on the same files.
func (g *flights[T]) start(ctx context.Context, key string, fn func(context.Context) (T, error)) *flight[T] {
	fctx, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	f := &flight[T]{done: make(chan struct{}), cancel: cancel}
	g.m[key] = f
	prev := g.draining[key]
	go func() {
		if prev != nil {
			<-prev.done
		}
		if err := context.Cause(fctx); err != nil {
			f.err = err
		} else {
			f.val, f.err = fn(fctx)
		}
		cancel(nil)
		g.mu.Lock()
		if g.m[key] == f {
			delete(g.m, key)
		}
		if g.draining[key] == f {
			delete(g.draining, key)
		}
		g.mu.Unlock()
		close(f.done)
	}()
	return f
}

// waiters is how many callers wait for key's run (for tests).
func (g *flights[T]) waiters(key string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if f := g.m[key]; f != nil {
		return f.waiters
	}
	return 0
}
