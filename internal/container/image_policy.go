package container

import (
	"context"
	"errors"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/image"
)

// checkImagePolicy enforces the image policy at CreateContainer on the
// container's image and the images it mounts as volumes, for a pod of
// namespace ns: an image pulled before the policy changed (or for another
// namespace) must still be allowed. A verdict of the policy in force,
// which every accepted pull leaves, makes each check a map lookup.
func (m *Manager) checkImagePolicy(ctx context.Context, img image.Image, cfg *runtimeapi.ContainerConfig, ns string) error {
	if err := m.d.Images.CheckPolicy(ctx, img, ns); err != nil {
		return err
	}
	for _, mnt := range cfg.GetMounts() {
		ref := mnt.GetImage().GetImage()
		if ref == "" {
			continue
		}
		vol, err := m.d.Images.Get(ref)
		if errors.Is(err, errdefs.ErrNotFound) {
			continue // mountImageVolumes says so, in its own words
		}
		if err != nil {
			return err
		}
		if err := m.d.Images.CheckPolicy(ctx, vol, ns); err != nil {
			return err
		}
	}
	return nil
}
