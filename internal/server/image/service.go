// Package image serves the CRI ImageService: it validates requests, calls
// the image domain service and builds the CRI types. The gRPC interceptor
// maps the wrapped errdefs sentinels to codes.
package image

import (
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/image"
)

// Service implements the methods of runtimeapi.ImageServiceServer. It does
// not embed UnimplementedImageServiceServer: the server assembly does.
type Service struct {
	images *image.Service
}

// New returns the service.
func New(images *image.Service) *Service {
	return &Service{images: images}
}

// imageName is the image a request's ImageSpec names, or an
// InvalidArgument error naming the RPC.
func imageName(rpc string, spec *runtimeapi.ImageSpec) (string, error) {
	if spec == nil || spec.Image == "" {
		return "", fmt.Errorf("%s: no image given: %w", rpc, errdefs.ErrInvalidArgument)
	}
	return spec.Image, nil
}

// toCRI builds the CRI Image of a record. Every lookup of one image returns
// the same record, so every reply names it the same way.
func toCRI(img image.Image) *runtimeapi.Image {
	out := &runtimeapi.Image{
		Id:          img.ID.String(),
		RepoTags:    img.RepoTags,
		RepoDigests: img.RepoDigests,
		Size:        uint64(img.Size),
		Username:    img.Username,
		Spec: &runtimeapi.ImageSpec{
			Image:          img.ID.String(),
			RuntimeHandler: img.RuntimeHandler,
			// The manifest's, as CRI-O reports them (a checkpoint
			// image shows its checkpoint annotations).
			Annotations: img.Annotations,
		},
		Pinned: img.Pinned,
	}
	if img.UID != nil {
		out.Uid = &runtimeapi.Int64Value{Value: *img.UID}
	}
	return out
}
