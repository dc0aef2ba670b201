package image

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/image/mediatype"
)

// maxLayers bounds the layers of one image: overlayfs stacks at most 500
// lower directories (OVL_MAX_STACK), so an image with more could never run,
// and a hostile manifest of thousands of tiny layers would otherwise start
// a download for each.
const maxLayers = 500

// shape is what a manifest or index document says of itself, whatever it
// was declared as.
type shape struct {
	MediaType string          `json:"mediaType"`
	Manifests json.RawMessage `json:"manifests"`
	Config    json.RawMessage `json:"config"`
	Layers    json.RawMessage `json:"layers"`
}

// present reports whether a field was in the document (null counts as
// absent).
func present(m json.RawMessage) bool {
	return len(m) > 0 && !bytes.Equal(m, []byte("null"))
}

func readShape(desc ocispec.Descriptor, what string, data []byte) (shape, error) {
	var s shape
	if err := json.Unmarshal(data, &s); err != nil {
		return s, fmt.Errorf("%s %s: %v: %w", what, desc.Digest, err, errdefs.ErrInvalidArgument)
	}
	return s, nil
}

// decodeManifest parses the image manifest desc names. A document whose
// own mediaType field or shape (a manifests list) says it is not an image
// manifest is refused, as is one whose config or layers cannot be fetched
// and unpacked safely: a registry must not make berthd read an index as a
// manifest, or the reverse, under a media type it lies about.
func decodeManifest(desc ocispec.Descriptor, data []byte) (ocispec.Manifest, error) {
	var m ocispec.Manifest
	s, err := readShape(desc, "manifest", data)
	if err != nil {
		return m, err
	}
	bad := func(format string, args ...any) (ocispec.Manifest, error) {
		return ocispec.Manifest{}, fmt.Errorf("manifest %s: %s: %w", desc.Digest, fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
	}
	if s.MediaType != "" && mediatype.KindOf(s.MediaType) != mediatype.Manifest {
		return bad("declared as %q but its mediaType field says %q", desc.MediaType, s.MediaType)
	}
	if present(s.Manifests) || !present(s.Config) {
		return bad("declared as %q but it is not an image manifest (it has a manifests list or no config)", desc.MediaType)
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return bad("%v", err)
	}
	if err := m.Config.Digest.Validate(); err != nil {
		return bad("config digest: %v", err)
	}
	if m.Config.Size < 0 {
		return bad("config size %d", m.Config.Size)
	}
	if len(m.Layers) > maxLayers {
		return bad("%d layers, more than the %d overlayfs can stack", len(m.Layers), maxLayers)
	}
	for _, l := range m.Layers {
		if err := l.Digest.Validate(); err != nil {
			return bad("layer digest %q: %v", l.Digest, err)
		}
		if l.Size < 0 {
			return bad("layer %s: size %d", l.Digest, l.Size)
		}
		if mediatype.KindOf(l.MediaType) != mediatype.Layer {
			return bad("layer %s: %s", l.Digest, layerTypeProblem(l.MediaType))
		}
	}
	return m, nil
}

// layerTypeProblem says why berthd does not unpack a layer of type mt.
func layerTypeProblem(mt string) string {
	switch {
	case strings.Contains(mt, "foreign") || strings.Contains(mt, "nondistributable"):
		return fmt.Sprintf("media type %q is a foreign (non-distributable) layer, which berthd does not fetch", mt)
	case strings.HasSuffix(mt, "+encrypted"):
		return fmt.Sprintf("media type %q is an encrypted layer, which berthd cannot decrypt", mt)
	}
	return fmt.Sprintf("media type %q is not a layer type berthd unpacks", mt)
}

// decodeIndex parses the index desc names, refusing an image manifest
// declared as an index (see decodeManifest).
func decodeIndex(desc ocispec.Descriptor, data []byte) (ocispec.Index, error) {
	var idx ocispec.Index
	s, err := readShape(desc, "index", data)
	if err != nil {
		return idx, err
	}
	if (s.MediaType != "" && mediatype.KindOf(s.MediaType) != mediatype.Index) || present(s.Config) || present(s.Layers) {
		return idx, fmt.Errorf("index %s: declared as %q but it is not an index (its mediaType field says %q, or it has a config or layers): %w",
			desc.Digest, desc.MediaType, s.MediaType, errdefs.ErrInvalidArgument)
	}
	if err := json.Unmarshal(data, &idx); err != nil {
		return idx, fmt.Errorf("index %s: %v: %w", desc.Digest, err, errdefs.ErrInvalidArgument)
	}
	return idx, nil
}
