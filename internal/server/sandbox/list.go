package sandbox

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/server"

	"github.com/berth-cri/berth/internal/sandbox"
)

// ListPodSandbox lists sandboxes matching the filter (id prefix, state,
// labels). The reply carries them already encoded (server.WireList):
// kubelet asks every second.
func (s *Service) ListPodSandbox(ctx context.Context, req *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	filter := toFilter(req.GetFilter())
	found := s.m.List(filter)
	items := make([]server.WireItem[runtimeapi.PodSandboxState], len(found))
	for i, sb := range found {
		items[i] = server.WireItem[runtimeapi.PodSandboxState]{ID: sb.ID, Version: sb.CRIState(), Build: func() proto.Message { return toCRI(sb) }}
	}
	reply := &runtimeapi.ListPodSandboxResponse{}
	if err := s.wire.Fill(reply, items, filter.IsEmpty()); err != nil {
		return nil, err
	}
	return reply, nil
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
	var out []*runtimeapi.PodSandbox
	for _, sb := range s.m.List(toFilter(f)) {
		out = append(out, toCRI(sb))
	}
	return out
}

func toFilter(f *runtimeapi.PodSandboxFilter) sandbox.Filter {
	filter := sandbox.Filter{ID: f.GetId(), Labels: f.GetLabelSelector()}
	if f.GetState() != nil {
		st := sandbox.ToState(f.GetState().GetState())
		filter.State = &st
	}
	return filter
}

// toCRI is sb's entry in a list. Only its CRI state changes after
// creation: server.WireList re-encodes it on that alone.
func toCRI(sb *sandbox.Sandbox) *runtimeapi.PodSandbox {
	cfg := sb.Config()
	return &runtimeapi.PodSandbox{
		Id: sb.ID, Metadata: cfg.GetMetadata(), State: sb.CRIState(), CreatedAt: sb.CreatedAt,
		Labels: cfg.GetLabels(), Annotations: cfg.GetAnnotations(), RuntimeHandler: sb.RuntimeHandler,
	}
}
