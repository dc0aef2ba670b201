package container

import (
	"context"

	"github.com/berth-cri/berth/internal/image"
)

// checkImagePolicy enforces the image policy on the image of a container
// of namespace ns at CreateContainer: an image pulled before the policy
// changed (or before berthd restarted) must still be allowed. A verdict of
// the policy in force, which every pull leaves, makes it a map lookup.
func (m *Manager) checkImagePolicy(ctx context.Context, img image.Image, ns string) error {
	return m.d.Images.CheckPolicy(ctx, img, ns)
}
