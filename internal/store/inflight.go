package store

import (
	"context"
	"sync"
)

// Inflight runs at most one creation per key (a pod or container name) at a
// time. kubelet gives up on RunPodSandbox and CreateContainer after its
// deadline and retries with the same name: the retry must get the first
// call's result, not a "name reserved" error, and the first call must
// finish its work even though its client is gone (CRI-O solves the same
// problem with its resourcestore).
type Inflight[T any] struct {
	mu    sync.Mutex
	calls map[string]*call[T] // guarded by mu
}

type call[T any] struct {
	done    chan struct{}
	val     T
	err     error
	joiners int // callers that joined a running call; guarded by Inflight.mu
}

// Do runs fn for key unless a call for key is already running, in which
// case it waits for that call and returns its result. fn gets a context
// that is not cancelled when the caller's is: the work completes (or rolls
// back) on its own. A caller whose ctx ends stops waiting with ctx.Err().
// joined reports whether the result came from another caller's fn.
func (f *Inflight[T]) Do(ctx context.Context, key string, fn func(context.Context) (T, error)) (val T, joined bool, err error) {
	f.mu.Lock()
	if f.calls == nil {
		f.calls = map[string]*call[T]{}
	}
	c, running := f.calls[key]
	if running {
		c.joiners++
	} else {
		c = &call[T]{done: make(chan struct{})}
		f.calls[key] = c
		go func() {
			c.val, c.err = fn(context.WithoutCancel(ctx))
			f.mu.Lock()
			delete(f.calls, key)
			f.mu.Unlock()
			close(c.done)
		}()
	}
	f.mu.Unlock()
	select {
	case <-c.done:
		return c.val, running, c.err
	case <-ctx.Done():
		var zero T
		return zero, running, ctx.Err()
	}
}
