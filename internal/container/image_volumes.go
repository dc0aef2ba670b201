package container

import (
	"context"
	"errors"
	"fmt"
	"os"

	securejoin "github.com/cyphar/filepath-securejoin"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/logctx"
	"github.com/berth-cri/berth/internal/oci"
	"github.com/berth-cri/berth/internal/snapshot"
)

// VolumeImage is an image mounted as a volume of the container (CRI
// Mount.image), held until the container is removed.
type VolumeImage struct {
	// Mount is the mount's index in the container config's mounts.
	Mount int `json:"mount"`
	// ImageID is the image id (sha256:<config>), reported as the mount's
	// image_ref (CRI-CONTRACT.md).
	ImageID string `json:"image_id"`
}

// volumeHolder names container id as a user of the image of its mount n.
// One holder per volume: two volumes of one image are two uses.
func volumeHolder(id string, n int) string { return fmt.Sprintf("container:%s:vol%d", id, n) }

// mountImageVolumes mounts each image volume of c read-only from its
// image's snapshots and returns the host path to bind for each container
// path: the snapshot's root, or image_sub_path inside it. Every image used
// is recorded in c.VolumeImages before anything else can fail, so tearDown
// releases it; the snapshots go with the rootfs (snapshot.RemoveRootfs).
// Every error starts with oci.ImageVolumeMountFailed. The caller holds c's
// lock.
func (m *Manager) mountImageVolumes(c *Container, vols []oci.ImageVolume) (map[string]string, error) {
	if len(vols) == 0 {
		return nil, nil
	}
	fail := func(v oci.ImageVolume, format string, args ...any) error {
		return fmt.Errorf("%s: mounts[%d]: image %q at %s: %w", oci.ImageVolumeMountFailed, v.Index, v.Image, v.ContainerPath,
			fmt.Errorf(format, args...))
	}
	out := map[string]string{}
	for _, v := range vols {
		img, err := m.d.Images.Use(v.Image, volumeHolder(c.ID, v.Index))
		if errors.Is(err, errdefs.ErrNotFound) {
			return nil, fail(v, "the image is not present (kubelet pulls it first): %w", err)
		}
		if err != nil {
			return nil, fail(v, "%w", err)
		}
		c.VolumeImages = append(c.VolumeImages, VolumeImage{Mount: v.Index, ImageID: img.ID.String()})
		key := snapshot.VolumeKey(c.ID, v.Index)
		if err := m.d.Snapshots.PrepareReadOnly(key, img.ChainIDs); err != nil {
			return nil, fail(v, "%w", err)
		}
		root, err := m.d.Snapshots.MountReadOnly(key)
		if err != nil {
			return nil, fail(v, "%w", err)
		}
		host := root
		if v.SubPath != "" {
			// Symlinks in the image resolve inside it, never onto the host.
			if host, err = securejoin.SecureJoin(root, v.SubPath); err != nil {
				return nil, fail(v, "image_sub_path %q: %w", v.SubPath, err)
			}
			if _, err := os.Stat(host); err != nil {
				return nil, fail(v, "image_sub_path %q does not exist in the image: %w", v.SubPath, errdefs.ErrInvalidArgument)
			}
		}
		out[v.ContainerPath] = host
	}
	return out, nil
}

// releaseVolumeImages ends c's use of its volume images.
func (m *Manager) releaseVolumeImages(ctx context.Context, c *Container) {
	for _, v := range c.VolumeImages {
		if err := m.d.Images.Release(v.ImageID, volumeHolder(c.ID, v.Mount)); err != nil {
			logctx.G(ctx, m.d.Log).WithError(err).WithField("container", c.ID).Warn("release an image volume's image")
		}
	}
}
