package sandbox

import (
	"context"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/server"

	"github.com/berth-cri/berth/internal/sandbox"
)

// ListPodSandbox lists sandboxes matching the filter (id prefix, state,
// labels).
func (s *Service) ListPodSandbox(ctx context.Context, req *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	return &runtimeapi.ListPodSandboxResponse{Items: s.list(req.GetFilter())}, nil
}

// StreamPodSandboxes is ListPodSandbox in batches, for nodes whose list
// would not fit one message.
func (s *Service) StreamPodSandboxes(req *runtimeapi.StreamPodSandboxesRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamPodSandboxesResponse]) error {
	items := s.list(req.GetFilter())
	return server.SendBatches(items, func(b []*runtimeapi.PodSandbox) error {
		return stream.Send(&runtimeapi.StreamPodSandboxesResponse{PodSandboxes: b})
	})
}

func (s *Service) list(f *runtimeapi.PodSandboxFilter) []*runtimeapi.PodSandbox {
	filter := sandbox.Filter{ID: f.GetId(), Labels: f.GetLabelSelector()}
	if f.GetState() != nil {
		st := sandbox.ToState(f.GetState().GetState())
		filter.State = &st
	}
	var out []*runtimeapi.PodSandbox
	for _, sb := range s.m.List(filter) {
		cfg := sb.Config()
		out = append(out, &runtimeapi.PodSandbox{
			Id: sb.ID, Metadata: cfg.GetMetadata(), State: sb.CRIState(), CreatedAt: sb.CreatedAt,
			Labels: cfg.GetLabels(), Annotations: cfg.GetAnnotations(), RuntimeHandler: sb.RuntimeHandler,
		})
	}
	return out
}
