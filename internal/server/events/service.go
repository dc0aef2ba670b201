// Package events is the CRI edge of GetContainerEvents, the stream behind
// kubelet's evented PLEG.
package events

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/events"
)

// DefaultBuffer is how many events a stream may fall behind by before it is
// cut. A node's burst is a few events per container start or stop; kubelet
// reads its stream into a channel of 1000 and is rarely behind at all.
const DefaultBuffer = 1024

// Service serves GetContainerEvents from a broker the container and sandbox
// services publish to.
type Service struct {
	broker *events.Broker
	buffer int
}

// New returns the service; buffer <= 0 is DefaultBuffer.
func New(broker *events.Broker, buffer int) *Service {
	if buffer <= 0 {
		buffer = DefaultBuffer
	}
	return &Service{broker: broker, buffer: buffer}
}

// GetContainerEvents streams every event published after the call until
// the client goes away. A client that falls more than the buffer behind is
// cut off with ResourceExhausted: it has lost events, and kubelet answers
// any stream error with a relist and a new stream (see internal/events).
func (s *Service) GetContainerEvents(req *runtimeapi.GetEventsRequest, stream grpc.ServerStreamingServer[runtimeapi.ContainerEventResponse]) error {
	// A failed Send returns before the client's context ends: cancel the
	// subscription with the handler.
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	for ev := range s.broker.Subscribe(ctx, s.buffer) {
		if err := stream.Send(ev); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return fmt.Errorf("container event stream fell more than %d events behind and lost events: %w", s.buffer, errdefs.ErrResourceExhausted)
}
