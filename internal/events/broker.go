// Package events fans container lifecycle events out to GetContainerEvents
// streams (kubelet's evented PLEG).
//
// The runtime must never wait for a reader, and a reader that keeps up must
// never miss an event. So each subscriber has its own buffer; Publish puts
// the event in every buffer without blocking, and a subscriber whose buffer
// is full is disconnected on the spot: its channel is closed and its stream
// ends with an error. Dropping single events instead would leave kubelet
// believing a state that is wrong with no way to tell; ending the stream
// makes kubelet relist (it does on every stream error) and reconnect, which
// repairs whatever it missed. kubelet falls back to its polling PLEG after
// repeated stream errors, which is the right answer for a node too busy to
// read its own events.
package events

import (
	"context"
	"sync"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Broker is safe for concurrent use. The zero value is not usable: use New.
type Broker struct {
	mu   sync.Mutex
	subs map[*subscriber]struct{} // mu guards subs and every subscriber's ch
}

type subscriber struct {
	ch   chan *runtimeapi.ContainerEventResponse
	stop func() bool // unregisters the context callback
}

// New returns a broker with no subscribers.
func New() *Broker {
	return &Broker{subs: map[*subscriber]struct{}{}}
}

// Publish hands ev to every subscriber, in the order Publish calls return
// (it holds the broker's lock while it hands out, so two publishers'
// events reach all subscribers in the same order). It never blocks on a
// subscriber. ev is shared by all of them: the caller must not change it
// afterwards.
func (b *Broker) Publish(ev *runtimeapi.ContainerEventResponse) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		select {
		case s.ch <- ev:
		default:
			// Full: this reader has fallen behind. See the package comment.
			b.dropLocked(s)
		}
	}
}

// Subscribe returns a channel that receives every event published from now
// on, buffering up to bufferSize of them (at least 1). The channel is closed
// when ctx ends or when the buffer overflows; the caller tells the two
// apart with ctx.Err(): a closed channel while ctx is live means the
// subscriber fell behind and has lost events.
func (b *Broker) Subscribe(ctx context.Context, bufferSize int) <-chan *runtimeapi.ContainerEventResponse {
	s := &subscriber{ch: make(chan *runtimeapi.ContainerEventResponse, max(bufferSize, 1))}
	b.mu.Lock()
	defer b.mu.Unlock()
	if ctx.Err() != nil {
		close(s.ch)
		return s.ch
	}
	b.subs[s] = struct{}{}
	// AfterFunc runs in its own goroutine, so it may take the lock; it is
	// registered under the lock so that Publish cannot drop s before stop
	// is set.
	s.stop = context.AfterFunc(ctx, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.dropLocked(s)
	})
	return s.ch
}

// dropLocked closes s's channel once, whichever of ctx and overflow comes
// first. b.mu must be held.
func (b *Broker) dropLocked(s *subscriber) {
	if _, ok := b.subs[s]; !ok {
		return
	}
	delete(b.subs, s)
	if s.stop != nil {
		s.stop()
	}
	close(s.ch)
}

// Subscribers is the number of connected subscribers.
func (b *Broker) Subscribers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}
