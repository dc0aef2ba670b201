package container

import (
	"cmp"
	"context"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/server"

	"github.com/berth-cri/berth/internal/container"
)

// ListContainers lists containers matching the filter. The reply carries
// them already encoded (server.WireList): kubelet asks every second. The
// containers are read in place (Manager.Select), not copied: a copy of
// every record was most of the handler's allocations.
func (s *Service) ListContainers(ctx context.Context, req *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	filter := toFilter(req.GetFilter())
	var found []listed
	s.m.Select(filter, func(c *container.Container) { found = append(found, listedOf(c)) })
	slices.SortFunc(found, func(a, b listed) int { return cmp.Compare(a.CreatedAt, b.CreatedAt) })
	items := make([]server.WireItem[container.State], len(found))
	for i := range found {
		l := &found[i]
		items[i] = server.WireItem[container.State]{ID: l.ID, Version: l.State, Build: func() proto.Message { return toCRI(l) }}
	}
	reply := &runtimeapi.ListContainersResponse{}
	if err := s.wire.Fill(reply, items, filter.IsEmpty()); err != nil {
		return nil, err
	}
	return reply, nil
}

// StreamContainers is ListContainers in batches.
func (s *Service) StreamContainers(req *runtimeapi.StreamContainersRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamContainersResponse]) error {
	items := s.list(req.GetFilter())
	return server.SendBatches(items, func(b []*runtimeapi.Container) error {
		return stream.Send(&runtimeapi.StreamContainersResponse{Containers: b})
	})
}

func (s *Service) list(f *runtimeapi.ContainerFilter) []*runtimeapi.Container {
	var out []*runtimeapi.Container
	for _, c := range s.m.List(toFilter(f)) {
		l := listedOf(c)
		out = append(out, toCRI(&l))
	}
	return out
}

func toFilter(f *runtimeapi.ContainerFilter) container.Filter {
	filter := container.Filter{ID: f.GetId(), SandboxID: f.GetPodSandboxId(), Labels: f.GetLabelSelector()}
	if f.GetState() != nil {
		st := container.FromCRIState(f.GetState().GetState())
		filter.State = &st
	}
	return filter
}

// listed is what a list entry shows of a container, copied out of its
// record. Only State changes after creation: server.WireList re-encodes
// an entry on that alone.
type listed struct {
	ID, SandboxID, ImageName, ImageRef, ImageID string
	State                                       container.State
	CreatedAt                                   int64
	config                                      *runtimeapi.ContainerConfig // never modified once decoded
}

func listedOf(c *container.Container) listed {
	return listed{ID: c.ID, SandboxID: c.SandboxID, ImageName: c.ImageName, ImageRef: c.ImageRef, ImageID: c.ImageID,
		State: c.State, CreatedAt: c.CreatedAt, config: c.Config()}
}

func toCRI(l *listed) *runtimeapi.Container {
	return &runtimeapi.Container{
		Id: l.ID, PodSandboxId: l.SandboxID, Metadata: l.config.GetMetadata(), Image: imageSpecOf(l.ImageName, l.config),
		ImageRef: l.ImageRef, ImageId: l.ImageID, State: container.ToCRIState(l.State), CreatedAt: l.CreatedAt,
		Labels: l.config.GetLabels(), Annotations: l.config.GetAnnotations(),
	}
}
