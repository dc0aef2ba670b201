package events

import (
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/container"
	"github.com/berth-cri/berth/internal/events"
	"github.com/berth-cri/berth/internal/sandbox"
	servercontainer "github.com/berth-cri/berth/internal/server/container"
	serversandbox "github.com/berth-cri/berth/internal/server/sandbox"
)

// Publisher turns container lifecycle events into the CRI events kubelet's
// evented PLEG reads: each carries the pod's status and the statuses of
// all its containers, as of the event.
type Publisher struct {
	broker     *events.Broker
	sandboxes  *sandbox.Manager
	containers *container.Manager
}

// NewPublisher returns a publisher into broker.
func NewPublisher(broker *events.Broker, sandboxes *sandbox.Manager, containers *container.Manager) *Publisher {
	return &Publisher{broker: broker, sandboxes: sandboxes, containers: containers}
}

var eventTypes = map[container.EventKind]runtimeapi.ContainerEventType{
	container.EventCreated: runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT,
	container.EventStarted: runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT,
	container.EventStopped: runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT,
	container.EventDeleted: runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT,
}

// ContainerEvent implements container.Events. It never blocks: the broker
// drops subscribers that do not keep up.
func (p *Publisher) ContainerEvent(kind container.EventKind, c *container.Container) {
	ev := &runtimeapi.ContainerEventResponse{
		ContainerId:        c.ID,
		ContainerEventType: eventTypes[kind],
		CreatedAt:          time.Now().UnixNano(),
	}
	if sb, err := p.sandboxes.Get(c.SandboxID); err == nil {
		ev.PodSandboxStatus = serversandbox.Status(sb)
	}
	for _, pc := range p.containers.List(container.Filter{SandboxID: c.SandboxID}) {
		if pc.SandboxID == c.SandboxID {
			ev.ContainersStatuses = append(ev.ContainersStatuses, servercontainer.Status(pc))
		}
	}
	if kind == container.EventDeleted {
		// Gone from the list already; kubelet still wants its last status.
		ev.ContainersStatuses = append(ev.ContainersStatuses, servercontainer.Status(c))
	}
	p.broker.Publish(ev)
}
