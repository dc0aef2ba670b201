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

// eventTypes maps the kinds of container and sandbox events alike
// (container.EventKind is sandbox.EventKind).
var eventTypes = map[sandbox.EventKind]runtimeapi.ContainerEventType{
	sandbox.EventCreated: runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT,
	sandbox.EventStarted: runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT,
	sandbox.EventStopped: runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT,
	sandbox.EventDeleted: runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT,
}

// ContainerEvent implements container.Events. It never blocks: the broker
// drops subscribers that do not keep up.
func (p *Publisher) ContainerEvent(kind container.EventKind, c *container.Container) {
	var podStatus *runtimeapi.PodSandboxStatus
	if sb, err := p.sandboxes.Get(c.SandboxID); err == nil {
		podStatus = serversandbox.Status(sb)
	}
	var gone *container.Container
	if kind == container.EventDeleted {
		gone = c // gone from the list already; kubelet still wants its last status
	}
	p.publish(c.ID, eventTypes[kind], podStatus, c.SandboxID, gone)
}

// SandboxEvent implements sandbox.Events: the event of the sandbox's own
// container (its pause), with the sandbox's id as container id, as
// containerd sends it. s is the sandbox as of the event (removed already
// for EventDeleted).
func (p *Publisher) SandboxEvent(kind sandbox.EventKind, s *sandbox.Sandbox) {
	p.publish(s.ID, eventTypes[kind], serversandbox.Status(s), s.ID, nil)
}

// publish sends one event carrying the pod's status and the statuses of
// all its containers (plus gone's, when set).
func (p *Publisher) publish(id string, typ runtimeapi.ContainerEventType, podStatus *runtimeapi.PodSandboxStatus, sandboxID string, gone *container.Container) {
	ev := &runtimeapi.ContainerEventResponse{
		ContainerId:        id,
		ContainerEventType: typ,
		CreatedAt:          time.Now().UnixNano(),
		PodSandboxStatus:   podStatus,
	}
	for _, pc := range p.containers.List(container.Filter{SandboxID: sandboxID}) {
		if pc.SandboxID == sandboxID {
			ev.ContainersStatuses = append(ev.ContainersStatuses, servercontainer.Status(pc))
		}
	}
	if gone != nil {
		ev.ContainersStatuses = append(ev.ContainersStatuses, servercontainer.Status(gone))
	}
	p.broker.Publish(ev)
}
