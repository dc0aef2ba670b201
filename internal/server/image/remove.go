package image

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// RemoveImage removes the image with all its tags. Removing an absent image
// succeeds: the call is idempotent (api.proto).
func (s *Service) RemoveImage(ctx context.Context, req *runtimeapi.RemoveImageRequest) (*runtimeapi.RemoveImageResponse, error) {
	name, err := imageName("RemoveImage", req.GetImage())
	if err != nil {
		return nil, err
	}
	if err := s.images.Remove(name); err != nil {
		return nil, err
	}
	return &runtimeapi.RemoveImageResponse{}, nil
}
