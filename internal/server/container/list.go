package container

import (
	"context"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/server"

	"github.com/berth-cri/berth/internal/container"
)

// ListContainers lists containers matching the filter.
func (s *Service) ListContainers(ctx context.Context, req *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	return &runtimeapi.ListContainersResponse{Containers: s.list(req.GetFilter())}, nil
}

// StreamContainers is ListContainers in batches.
func (s *Service) StreamContainers(req *runtimeapi.StreamContainersRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamContainersResponse]) error {
	items := s.list(req.GetFilter())
	return server.SendBatches(items, func(b []*runtimeapi.Container) error {
		return stream.Send(&runtimeapi.StreamContainersResponse{Containers: b})
	})
}

func (s *Service) list(f *runtimeapi.ContainerFilter) []*runtimeapi.Container {
	filter := container.Filter{ID: f.GetId(), SandboxID: f.GetPodSandboxId(), Labels: f.GetLabelSelector()}
	if f.GetState() != nil {
		st := container.FromCRIState(f.GetState().GetState())
		filter.State = &st
	}
	var out []*runtimeapi.Container
	for _, c := range s.m.List(filter) {
		cfg := c.Config()
		out = append(out, &runtimeapi.Container{
			Id: c.ID, PodSandboxId: c.SandboxID, Metadata: cfg.GetMetadata(), Image: imageSpec(c),
			ImageRef: c.ImageRef, ImageId: c.ImageID, State: c.CRIState(), CreatedAt: c.CreatedAt,
			Labels: cfg.GetLabels(), Annotations: cfg.GetAnnotations(),
		})
	}
	return out
}
