// Package image keeps the node's images: their metadata records (one JSON
// file per image id under <root_dir>/images), the content store of their
// manifests and configs, and their layer snapshots, and it pulls new ones.
// The CRI image service and the container service both use it.
package image

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Image is one image record. ID is "sha256:<config digest>"; an image is
// found by its ID, any of its RepoTags (fully qualified, name:tag) or any
// of its RepoDigests (name@sha256:<digest of what was resolved>), and every
// one of these lookups returns the same record.
type Image struct {
	ID          digest.Digest `json:"id"`
	RepoTags    []string      `json:"repoTags,omitempty"`
	RepoDigests []string      `json:"repoDigests,omitempty"`
	// Size is the compressed size of the layers plus the config, as in the
	// manifest (containerd reports the same), so it is the same on every node.
	Size int64 `json:"size"`
	// UID is the numeric user of the image config's User, Username its
	// name; at most one is set (see userFromConfig).
	UID      *int64 `json:"uid,omitempty"`
	Username string `json:"username,omitempty"`
	// Spec is the image config: Config holds what CreateContainer needs
	// (env, entrypoint, cmd, working dir, user, stop signal, ports, labels,
	// volumes).
	Spec ocispec.Image `json:"spec"`
	// DiffIDs are the uncompressed layer digests, base first; ChainIDs the
	// snapshot keys of the same layers (see chainIDs).
	DiffIDs  []digest.Digest `json:"diffIDs"`
	ChainIDs []digest.Digest `json:"chainIDs"`
	// Blobs are the content-store blobs this image holds: the config and
	// every manifest and index it was resolved through. Layer blobs are not
	// kept (see layer.go).
	Blobs []digest.Digest `json:"blobs"`
	// Annotations are the pulled manifest's (the one for this platform):
	// a checkpoint image is told by them (see container/restore.go).
	// Records written before they were kept have none.
	Annotations map[string]string `json:"annotations,omitempty"`
	// RuntimeHandler is the CRI runtime handler of the last pull
	// (ImageSpec.runtime_handler), reported back in Status and List.
	RuntimeHandler string    `json:"runtimeHandler,omitempty"`
	PulledAt       time.Time `json:"pulledAt"`

	// Removed marks an image that RemoveImage removed while containers
	// still used it: it is invisible to Get and List, and its record only
	// keeps its snapshots alive until Holders is empty.
	Removed bool     `json:"removed,omitempty"`
	Holders []string `json:"holders,omitempty"`

	// Pinned is computed at lookup (the configured sandbox images), never
	// stored.
	Pinned bool `json:"-"`
}

// clone is a deep copy of the parts a caller could modify.
func (img *Image) clone() Image {
	c := *img
	c.RepoTags = slices.Clone(img.RepoTags)
	c.RepoDigests = slices.Clone(img.RepoDigests)
	c.DiffIDs = slices.Clone(img.DiffIDs)
	c.ChainIDs = slices.Clone(img.ChainIDs)
	c.Blobs = slices.Clone(img.Blobs)
	c.Holders = slices.Clone(img.Holders)
	c.Annotations = maps.Clone(img.Annotations)
	if img.UID != nil {
		uid := *img.UID
		c.UID = &uid
	}
	return c
}

// userFromConfig splits an image config's User the way CRI reports it:
// "1002" and "1003:1004" give uid 1002 and 1003; "www-data" and
// "www-data:1004" give the username www-data; "" gives neither. The group
// part never matters here.
func userFromConfig(user string) (*int64, string) {
	if user == "" {
		return nil, ""
	}
	name, _, _ := strings.Cut(user, ":")
	if name == "" {
		return nil, ""
	}
	uid, err := strconv.ParseInt(name, 10, 64)
	if err != nil {
		return nil, name
	}
	return &uid, ""
}

// chainIDs computes the snapshot key of each layer from the diff IDs, as
// the OCI image spec defines ChainID: chain[0] = diff[0], chain[i] =
// sha256(chain[i-1] + " " + diff[i]). A chain ID names a layer together with
// everything below it, so identical layers on different bases stay apart.
func chainIDs(diffIDs []digest.Digest) []digest.Digest {
	out := make([]digest.Digest, len(diffIDs))
	for i, d := range diffIDs {
		if i == 0 {
			out[i] = d
			continue
		}
		out[i] = digest.FromString(out[i-1].String() + " " + d.String())
	}
	return out
}
