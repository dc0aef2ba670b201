package image

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/registry"
)

// PullImage pulls the image and answers its id, which kubelet then uses as
// the image of its containers (image_ref = Image.id, CRI-CONTRACT.md).
// Failures are plain wrapped errors (gRPC Unknown, which keeps a
// "RegistryUnavailable" reason visible to kubelet), except a malformed
// reference (InvalidArgument) and an image the image policy refuses
// (PermissionDenied, which kubelet shows as ErrImagePull with the message).
func (s *Service) PullImage(ctx context.Context, req *runtimeapi.PullImageRequest) (*runtimeapi.PullImageResponse, error) {
	name, err := imageName("PullImage", req.GetImage())
	if err != nil {
		return nil, err
	}
	// The pod's namespace selects its section of the image policy.
	ns := req.GetSandboxConfig().GetMetadata().GetNamespace()
	img, err := s.images.PullFor(ctx, name, authOf(req.GetAuth()), req.GetImage().GetRuntimeHandler(), ns)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.PullImageResponse{ImageRef: img.ID.String()}, nil
}

// authOf converts CRI credentials; nil means none (node-level credentials
// from the auth file still apply).
func authOf(a *runtimeapi.AuthConfig) *registry.Auth {
	if a == nil {
		return nil
	}
	return &registry.Auth{
		Username:      a.Username,
		Password:      a.Password,
		Auth:          a.Auth,
		IdentityToken: a.IdentityToken,
		RegistryToken: a.RegistryToken,
		ServerAddress: a.ServerAddress,
	}
}
