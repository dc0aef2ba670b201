package flight

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-cri/berth/internal/testsupport"
)

// blocked is a call that counts its runs and returns "done" once release
// is closed, or its context's cause once that ends.
type blocked struct {
	runs    atomic.Int32
	release chan struct{}
}

func newBlocked() *blocked { return &blocked{release: make(chan struct{})} }

func (b *blocked) fn(ctx context.Context) (string, error) {
	b.runs.Add(1)
	select {
	case <-b.release:
		return "done", nil
	case <-ctx.Done():
		return "", context.Cause(ctx)
	}
}

// A create (kubelet's deadline passed, the call goes on) is joined by the
// retries with the same name, which get its result.
func TestRunsToTheEndAndRetriesJoin(t *testing.T) {
	var g Group[string]
	b := newBlocked()
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() { _, _, err := g.Do(ctx, "pod_ns_uid_0", b.fn); first <- err }()
	testsupport.PollUntil(t, "the call to start", 5*time.Second, func() bool { return b.runs.Load() == 1 })
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Fatalf("first caller: %v", err)
	}
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			v, joined, err := g.Do(context.Background(), "pod_ns_uid_0", b.fn)
			if v != "done" || !joined || err != nil {
				t.Errorf("retry got %q joined=%v err=%v", v, joined, err)
			}
		})
	}
	// Released only once all three joined (else a late one would start anew).
	testsupport.PollUntil(t, "three retries to join", 5*time.Second, func() bool { return g.Waiters("pod_ns_uid_0") == 3 })
	close(b.release)
	wg.Wait()
	if n := b.runs.Load(); n != 1 {
		t.Fatalf("fn ran %d times", n)
	}
}

// A shared pull goes on while one caller waits; once none is left it is
// cancelled, and the next caller's call runs only after it returned.
func TestCancelAbandoned(t *testing.T) {
	g := Group[string]{CancelAbandoned: true}
	b := newBlocked()
	ctx1, cancel1 := context.WithCancel(context.Background())
	ctx2, cancel2 := context.WithCancel(context.Background())
	errs := make(chan error, 2)
	for _, ctx := range []context.Context{ctx1, ctx2} {
		go func() { _, _, err := g.Do(ctx, "k", b.fn); errs <- err }()
	}
	testsupport.PollUntil(t, "both callers to wait", 5*time.Second, func() bool { return g.Waiters("k") == 2 })
	cancel1()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Fatalf("first caller: %v", err)
	}
	if b.runs.Load() != 1 || g.Waiters("k") != 1 {
		t.Fatalf("runs %d, waiters %d after one caller left", b.runs.Load(), g.Waiters("k"))
	}

	// The last caller leaves: the call is cancelled with ErrAbandoned, but
	// returns only when released, so a new call must wait for it.
	var cancelled atomic.Bool
	next := make(chan struct{})
	slowExit := func(ctx context.Context) (string, error) {
		<-ctx.Done()
		cancelled.Store(errors.Is(context.Cause(ctx), ErrAbandoned))
		<-next
		return "", ctx.Err()
	}
	g2 := Group[string]{CancelAbandoned: true}
	ctx3, cancel3 := context.WithCancel(context.Background())
	go func() { _, _, err := g2.Do(ctx3, "k", slowExit); errs <- err }()
	testsupport.PollUntil(t, "the call to start", 5*time.Second, func() bool { return g2.Waiters("k") == 1 })
	cancel3()
	<-errs
	var second atomic.Bool
	res := make(chan string, 1)
	go func() {
		v, joined, _ := g2.Do(context.Background(), "k", func(context.Context) (string, error) {
			second.Store(true)
			return "again", nil
		})
		if joined {
			v = "joined a cancelled call"
		}
		res <- v
	}()
	time.Sleep(20 * time.Millisecond) // a chance to run too early
	if second.Load() {
		t.Fatal("a new call ran while the abandoned one was winding down")
	}
	close(next)
	if v := <-res; v != "again" || !cancelled.Load() {
		t.Fatalf("new call: %q; abandoned call saw ErrAbandoned: %v", v, cancelled.Load())
	}

	cancel2()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Fatalf("second caller: %v", err)
	}
}
