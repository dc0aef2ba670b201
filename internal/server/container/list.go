package container

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/server"

	"github.com/berth-cri/berth/internal/container"
)

// ListContainers lists containers matching the filter. The reply carries
// them already encoded (server.WireList): kubelet asks every second.
func (s *Service) ListContainers(ctx context.Context, req *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	f := req.GetFilter()
	found := s.m.List(toFilter(f))
	items := make([]server.WireItem[container.State], len(found))
	for i, c := range found {
		items[i] = server.WireItem[container.State]{ID: c.ID, Version: c.State, Build: func() proto.Message { return toCRI(c) }}
	}
	entries, err := s.wire.Encode(items, isEmpty(f))
	if err != nil {
		return nil, err
	}
	reply := &runtimeapi.ListContainersResponse{}
	server.SetEntries(reply, entries)
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
		out = append(out, toCRI(c))
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

// isEmpty says f lets every container through.
func isEmpty(f *runtimeapi.ContainerFilter) bool {
	return f.GetId() == "" && f.GetPodSandboxId() == "" && f.GetState() == nil && len(f.GetLabelSelector()) == 0
}

// toCRI is c's entry in a list. Only its state changes after creation:
// server.WireList re-encodes it on that alone.
func toCRI(c *container.Container) *runtimeapi.Container {
	cfg := c.Config()
	return &runtimeapi.Container{
		Id: c.ID, PodSandboxId: c.SandboxID, Metadata: cfg.GetMetadata(), Image: imageSpec(c),
		ImageRef: c.ImageRef, ImageId: c.ImageID, State: c.CRIState(), CreatedAt: c.CreatedAt,
		Labels: cfg.GetLabels(), Annotations: cfg.GetAnnotations(),
	}
}
