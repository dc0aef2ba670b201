package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

// verboseInfo is ImageStatus's info["info"], shaped like containerd's so
// tools that read it (crictl inspecti) find the same keys.
type verboseInfo struct {
	ChainID   digest.Digest `json:"chainID"`
	ImageSpec ocispec.Image `json:"imageSpec"`
}

// ImageStatus answers the image the spec names (id, tag or repo digest),
// always the same canonical record. An absent image is not an error: the
// reply has no image, and kubelet then pulls it.
func (s *Service) ImageStatus(ctx context.Context, req *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	name, err := imageName("ImageStatus", req.GetImage())
	if err != nil {
		return nil, err
	}
	img, err := s.images.Get(name)
	if errors.Is(err, errdefs.ErrNotFound) {
		return &runtimeapi.ImageStatusResponse{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("image status %q: %w", name, err)
	}
	resp := &runtimeapi.ImageStatusResponse{Image: toCRI(img)}
	if req.GetVerbose() {
		info := verboseInfo{ImageSpec: img.Spec}
		if n := len(img.ChainIDs); n > 0 {
			info.ChainID = img.ChainIDs[n-1]
		}
		data, err := json.Marshal(info)
		if err != nil {
			return nil, fmt.Errorf("image status %q: encode info: %w", name, err)
		}
		resp.Info = map[string]string{"info": string(data)}
	}
	return resp, nil
}
