package events

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/testsupport"
)

func event(i int) *runtimeapi.ContainerEventResponse {
	return &runtimeapi.ContainerEventResponse{ContainerId: fmt.Sprint(i), CreatedAt: int64(i)}
}

// drain reads ch until it closes or n events have come.
func drain(ch <-chan *runtimeapi.ContainerEventResponse, n int) (got []int64, closed bool) {
	for len(got) < n {
		ev, ok := <-ch
		if !ok {
			return got, true
		}
		got = append(got, ev.CreatedAt)
	}
	return got, false
}

func TestBrokerSubscriber(t *testing.T) {
	for _, tc := range []struct {
		name      string
		buffer    int
		publish   int
		wantGot   int
		wantClose bool
	}{
		{"keeps up", 8, 8, 8, false},
		{"zero buffer means one", 0, 1, 1, false},
		{"falls behind: disconnected after what fitted", 3, 5, 3, true},
		{"one too many", 4, 5, 4, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := New()
			ch := b.Subscribe(t.Context(), tc.buffer)
			// Publishing without anyone reading must never block.
			for i := range tc.publish {
				b.Publish(event(i))
			}
			got, closed := drain(ch, tc.wantGot)
			if closed || len(got) != tc.wantGot {
				t.Fatalf("got %v (closed %v), want %d events", got, closed, tc.wantGot)
			}
			select {
			case ev, ok := <-ch:
				if ok || !tc.wantClose {
					t.Fatalf("after the buffered events: %v, open %v; want closed = %v", ev, ok, tc.wantClose)
				}
			default:
				if tc.wantClose {
					t.Fatal("slow subscriber not disconnected")
				}
			}
			for i, v := range got {
				if v != int64(i) {
					t.Fatalf("events out of order: %v", got)
				}
			}
			wantSubs := 1
			if tc.wantClose {
				wantSubs = 0
			}
			if n := b.Subscribers(); n != wantSubs {
				t.Errorf("%d subscribers, want %d", n, wantSubs)
			}
			if tc.wantClose {
				// A dropped subscriber is really gone: more events are fine.
				b.Publish(event(99))
			}
		})
	}
}

func TestBrokerContextEnds(t *testing.T) {
	b := New()
	ctx, cancel := context.WithCancel(context.Background())
	ch := b.Subscribe(ctx, 4)
	b.Publish(event(0))
	cancel()
	got, closed := drain(ch, 10)
	if !closed || len(got) > 1 {
		t.Fatalf("after cancel: got %v, closed %v", got, closed)
	}
	if ctx.Err() == nil {
		t.Fatal("ctx must be done: that is how a reader tells cancel from overflow")
	}
	testsupport.PollUntil(t, "the subscriber's removal after its context ended", 5*time.Second, func() bool { return b.Subscribers() == 0 })
	b.Publish(event(1)) // no send on a closed channel

	done, cancelDone := context.WithCancel(context.Background())
	cancelDone()
	if _, closed := drain(b.Subscribe(done, 1), 1); !closed {
		t.Fatal("subscribing with a done context must return a closed channel")
	}
	if b.Subscribers() != 0 {
		t.Fatal("a done context must not register")
	}
}

// TestBrokerConcurrent runs publishers and readers at once (meant for
// -race): readers that keep up get every event, all in the same order, and
// a reader that never reads is dropped without slowing anyone.
func TestBrokerConcurrent(t *testing.T) {
	const publishers, perPublisher, readers = 4, 250, 3
	const total = publishers * perPublisher
	b := New()
	var chans []<-chan *runtimeapi.ContainerEventResponse
	for range readers {
		chans = append(chans, b.Subscribe(t.Context(), total))
	}
	stuck := b.Subscribe(t.Context(), 10)

	results := make([][]int64, readers)
	var rwg sync.WaitGroup
	for i, ch := range chans {
		rwg.Go(func() {
			results[i], _ = drain(ch, total)
		})
	}
	var pwg sync.WaitGroup
	for p := range publishers {
		pwg.Go(func() {
			for i := range perPublisher {
				b.Publish(event(p*perPublisher + i))
			}
		})
	}
	pwg.Wait()
	rwg.Wait()

	for i, r := range results {
		if len(r) != total {
			t.Fatalf("reader %d got %d events, want %d", i, len(r), total)
		}
		for j := range r {
			if r[j] != results[0][j] {
				t.Fatalf("reader %d saw another order than reader 0 at %d", i, j)
			}
		}
	}
	if got, closed := drain(stuck, total); !closed || len(got) != 10 {
		t.Fatalf("stuck reader: %d events, closed %v; want its 10 and a close", len(got), closed)
	}
}
