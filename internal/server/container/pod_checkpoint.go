package container

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CheckpointPod dumps the selected running containers of a pod into the
// caller's empty output_path as one consistent cut (all paused first, all
// resumed before the answer). cri-api 0.37.
func (s *Service) CheckpointPod(ctx context.Context, req *runtimeapi.CheckpointPodRequest) (*runtimeapi.CheckpointPodResponse, error) {
	if err := s.m.CheckpointPod(ctx, req.GetPodSandboxId(), req.GetOutputPath(), req.GetContainerIds(), req.GetOptions()); err != nil {
		return nil, err
	}
	return &runtimeapi.CheckpointPodResponse{}, nil
}

// RestorePod runs a new sandbox and creates its containers, in
// CONTAINER_CREATED, from a CheckpointPod directory; kubelet starts them.
// On error nothing it made is left. cri-api 0.37.
func (s *Service) RestorePod(ctx context.Context, req *runtimeapi.RestorePodRequest) (*runtimeapi.RestorePodResponse, error) {
	pod, restored, err := s.m.RestorePod(ctx, req.GetCheckpointPath(), req.GetConfig(), req.GetRuntimeHandler(), req.GetOptions(), req.GetContainerConfigs())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.RestorePodResponse{PodSandboxId: pod, RestoredContainers: restored}, nil
}
