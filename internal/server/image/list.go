package image

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/server"

	"github.com/berth-cri/berth/internal/image"
)

// ListImages lists every image, or the one image the filter names.
func (s *Service) ListImages(ctx context.Context, req *runtimeapi.ListImagesRequest) (*runtimeapi.ListImagesResponse, error) {
	imgs, err := s.list(req.GetFilter())
	if err != nil {
		return nil, err
	}
	out := make([]*runtimeapi.Image, len(imgs))
	for i, img := range imgs {
		out[i] = toCRI(img)
	}
	return &runtimeapi.ListImagesResponse{Images: out}, nil
}

// StreamImages is ListImages in batches (each image exactly once, then EOF).
func (s *Service) StreamImages(req *runtimeapi.StreamImagesRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamImagesResponse]) error {
	imgs, err := s.list(req.GetFilter())
	if err != nil {
		return err
	}
	return server.SendBatches(imgs, func(b []image.Image) error {
		batch := make([]*runtimeapi.Image, 0, len(b))
		for _, img := range b {
			batch = append(batch, toCRI(img))
		}
		if err := stream.Send(&runtimeapi.StreamImagesResponse{Images: batch}); err != nil {
			return fmt.Errorf("stream images: %w", err)
		}
		return nil
	})
}

func (s *Service) list(f *runtimeapi.ImageFilter) ([]image.Image, error) {
	imgs, err := s.images.List(f.GetImage().GetImage())
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	return imgs, nil
}
